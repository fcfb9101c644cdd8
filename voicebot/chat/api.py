"""HTTP API of the web chat: ``POST /api/chat`` and the widget page (``GET /chat``).

Request ``{session_id?, message}``; response ``{session_id, reply: {text, link?, options?},
intent, confidence}``. Bad input gets a 4xx with ``{error}`` in Danish-free plain English, since
it is for the widget's developer, not the citizen.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from voicebot.chat.service import ChatService

MAX_BODY_BYTES = 8 * 1024
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WIDGET = Path(__file__).with_name("widget.html")
SERVICE_KEY: web.AppKey = web.AppKey("chat_service", object)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def chat(request: web.Request) -> web.Response:
    service: ChatService = request.app[SERVICE_KEY]
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"request body too large (max {MAX_BODY_BYTES} bytes)")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return _error(413, f"request body too large (max {MAX_BODY_BYTES} bytes)")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, f"body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object {session_id?, message}")
    message, session_id = body.get("message"), body.get("session_id")
    if not isinstance(message, str) or not message.strip():
        return _error(400, "message: required, a non-empty string")
    limit = service.config.max_message_chars
    if len(message) > limit:
        return _error(413, f"message: too long ({len(message)} characters, max {limit})")
    if session_id is not None and (not isinstance(session_id, str) or not SESSION_RE.match(session_id)):
        return _error(400, "session_id: 1-64 characters of letters, digits, '-' or '_'")
    # matching is CPU work (the embedding model): keep it off the event loop
    result = await asyncio.get_running_loop().run_in_executor(None, service.reply, session_id, message)
    return web.json_response(result, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def widget(request: web.Request) -> web.Response:
    return web.Response(text=WIDGET.read_text(encoding="utf-8"), content_type="text/html")


def add_chat_routes(app: web.Application, service: ChatService) -> None:
    """Mount the chat API and widget on the ``voicebot serve`` web app."""
    app[SERVICE_KEY] = service
    app.router.add_post("/api/chat", chat)
    app.router.add_get("/chat", widget)
