"""HTTP API of the web chat: ``POST /api/chat`` and the widget page (``GET /chat``).

Request ``{session_id?, message}``; response ``{session_id, new_session, reply: {text, link?,
options?}, intent, confidence, ended}``. Session ids are issued by the server: send none to start,
then the one the last response gave; an id the server does not hold starts a new session under a
new id (``new_session: true``), see ``voicebot/chat/sessions.py``.

The embeddable widget: ``GET /widget.js`` (one ``<script src=".../widget.js" data-tenant="kff" defer>``
tag on any page; see ``voicebot/chat/widget.js``), ``GET /widget-demo`` (a host page carrying that tag)
and ``GET /api/chat/info?tenant=kff`` (``{phone, hours_today, open_now, ...}`` for its "Tal med en
medarbejder" panel and its privacy note). The widget runs on other sites' pages, so the chat API
answers cross-origin requests: from any site, or only from ``chat.allowed_origins`` (403 for the
others; ``voicebot/chat/origins.py``). No cookies are involved.

Status codes: 400 bad JSON (also nested deeper than ``MAX_JSON_DEPTH``) or a bad field; 408 a body
that takes longer than ``BODY_SECONDS`` to arrive; 413 a body over ``MAX_BODY_BYTES`` or a message
over ``chat.max_message_chars``; 429 with ``Retry-After`` when this client sends too fast or the
chat is busy (worker pool or session store full). 429 rather than 503 for "busy": both mean "try
again shortly", and a flood must not look like a server fault to monitoring. Errors are
``{error}`` in plain English for the widget's developer, plus ``message`` in Danish where the
citizen should be told something.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from voicebot.chat.limits import ChatBusy, RateLimiter, WorkPool, client_key, parse_networks
from voicebot.chat.origins import OriginPolicy
from voicebot.chat.service import MAX_BODY_BYTES
from voicebot.knowledge.departments import HUMAN, KnowledgeConfig, load_directory
from voicebot.knowledge.hours import DANISH_DAYS, DAYS, parse_interval
from voicebot.metrics import CHAT_REQUESTS

if TYPE_CHECKING:
    from voicebot.chat.service import ChatService

log = logging.getLogger(__name__)

BODY_SECONDS = 10.0
REFUSED_LOG_SECONDS = 60.0
MAX_JSON_DEPTH = 4  # the body is one flat object; anything deeper is not ours
SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
WIDGET = Path(__file__).with_name("widget.html")
WIDGET_JS = Path(__file__).with_name("widget.js")
WIDGET_DEMO = Path(__file__).with_name("widget_demo.html")
WIDGET_JS_MAX_AGE = 300  # seconds: a fixed widget reaches every host page within minutes
CORS = {"Access-Control-Allow-Origin": "*"}  # widget.js: a public script any page may load
SERVICE_KEY: web.AppKey = web.AppKey("chat_service", object)
API_KEY: web.AppKey = web.AppKey("chat_api", object)

TOO_FAST = "Du sender beskeder meget hurtigt. Vent et øjeblik, og prøv igen."
TOO_BUSY = "Der er travlt lige nu. Prøv igen om lidt."
FAILED = "Der skete en fejl hos os. Prøv igen om lidt."
PRIVACY = ("Du skriver med en digital assistent, ikke med en medarbejder. Vi gemmer det, du skriver, og "
           "svarene i {days} dage for at kunne forbedre hjælpen. CPR-numre og andre lange numre fjernes, "
           "før noget gemmes. Skriv ikke personlige oplysninger, som vi ikke har brug for.")


class BadRequest(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status


def _error(status: int, error: str, message: str | None = None, retry_after: float | None = None) -> web.Response:
    body = {"error": error, **({"message": message} if message else {})}
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers,  # CORS: origin_middleware
                             dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body however it was split into packets or chunks, at most ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(413, f"request body too large (max {limit} bytes)")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > limit:
                    raise BadRequest(413, f"request body too large (max {limit} bytes)")
    except TimeoutError:
        raise BadRequest(408, f"request body not received within {BODY_SECONDS:g} s") from None
    return bytes(body)


def parse_body(raw: bytes, max_chars: int) -> tuple[str | None, str, str | None]:
    """``(session_id, message, tenant)`` from a request body, or ``BadRequest`` saying what is wrong."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not valid UTF-8") from None
    except RecursionError:  # the C parser's guard against deep nesting: "[[[[..."
        raise BadRequest(400, f"body is not valid JSON: nested too deeply (max {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError, and also a number of more than 4300 digits
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object {session_id?, message, tenant?}")
    if _deeper_than(body, MAX_JSON_DEPTH):
        raise BadRequest(400, f"body is nested too deeply (max {MAX_JSON_DEPTH} levels)")
    message, session_id = body.get("message"), body.get("session_id")
    if not isinstance(message, str) or not message.strip():
        raise BadRequest(400, "message: required, a non-empty string")
    if len(message) > max_chars:
        raise BadRequest(413, f"message: too long ({len(message)} characters, max {max_chars})")
    if session_id is not None and (not isinstance(session_id, str) or not SESSION_RE.match(session_id)):
        raise BadRequest(400, "session_id: the id a previous response gave (letters, digits, '-', '_'), or null")
    tenant = body.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not TENANT_RE.match(tenant)):
        raise BadRequest(400, "tenant: the widget's data-tenant (lower-case letters, digits, '-'), or null")
    return session_id, message, tenant


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


class ChatApi:
    """The request handler with the limits it enforces (one per web app)."""

    def __init__(self, service: ChatService) -> None:
        c = service.config
        self.service = service
        self.trusted = parse_networks(c.trusted_proxies)
        self.limiter = RateLimiter(c.rate_per_second, c.rate_burst)
        self.pool = WorkPool(c.workers, c.max_waiting, c.wait_seconds)
        self.origins = OriginPolicy(c.allowed_origins)
        self._refused: dict[str, int] = {}  # since the last log line
        self._refused_logged = 0.0

    async def chat(self, request: web.Request) -> web.Response:
        response = await self._chat(request)
        CHAT_REQUESTS.labels(str(response.status)).inc()
        return response

    async def _chat(self, request: web.Request) -> web.Response:
        client = client_key(request.remote, request.headers.getall("X-Forwarded-For", []), self.trusted)
        wait = self.limiter.check(client)  # first: a flood costs no reading, parsing or matching
        if wait:
            self._note_refused("rate limit")
            return _error(429, "too many requests from this client", TOO_FAST, wait)
        try:
            session_id, message, tenant = parse_body(await read_body(request), self.service.config.max_message_chars)
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        if tenant is not None and tenant not in self.service.kb.tenants:
            return _error(404, f"unknown tenant {tenant!r} (tenants: {', '.join(sorted(self.service.kb.tenants))})")
        try:
            result = await self.pool.run(self.service.reply, session_id, message, client, tenant)
        except ChatBusy as exc:
            self._note_refused("busy")
            return _error(429, f"busy: {exc}", TOO_BUSY, exc.retry_after)
        except Exception:  # noqa: BLE001 - the request's boundary: a bug answers 500, logged, never a hang
            log.exception("chat turn failed", extra={"session": session_id or "new"})
            return _error(500, "internal error (logged)", FAILED)
        return web.json_response(result, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def preflight(self, request: web.Request) -> web.Response:
        """CORS preflight of the widget's JSON POST from another site's page."""
        return web.Response(status=204, headers={"Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                                                 "Access-Control-Allow-Headers": "Content-Type",
                                                 "Access-Control-Max-Age": "86400"})

    async def info(self, request: web.Request) -> web.Response:
        """``GET /api/chat/info?tenant=kff``: what the widget shows besides answers."""
        kb = self.service.kb
        tenant = request.query.get("tenant") or kb.main
        if tenant not in kb.tenants:
            return _error(404, f"unknown tenant {tenant!r} (tenants: {', '.join(sorted(kb.tenants))})")
        body = chat_info(self.service.settings, dt.datetime.now(dt.timezone.utc), kb, tenant)
        body["max_message_chars"] = self.service.config.max_message_chars
        return web.json_response(body, headers={"Cache-Control": "no-cache"},
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False))

    def _note_refused(self, reason: str) -> None:
        """Count 429s; log them at most once a minute, so a flood is visible but not a log flood."""
        self._refused[reason] = self._refused.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._refused_logged >= REFUSED_LOG_SECONDS:
            log.warning("chat requests refused", extra={k.replace(" ", "_"): n for k, n in self._refused.items()})
            self._refused, self._refused_logged = {}, now

    async def close(self, app: web.Application) -> None:
        self.pool.close()


async def widget(request: web.Request) -> web.Response:
    return web.Response(text=WIDGET.read_text(encoding="utf-8"), content_type="text/html")


def chat_info(settings: Any, now: dt.datetime, kb: Any = None, tenant: str | None = None) -> dict[str, Any]:
    """The tenant's human route (phone number, opening hours at ``now``, in Danish) and the
    privacy note. Without ``kb``: the main config's departments and the main number's tenant."""
    from voicebot.store import StoreConfig

    directory = kb.directory if kb is not None and kb.directory else load_directory(settings)
    human = kb.human_for(tenant) if kb is not None else HUMAN
    dept = directory.departments.get(human)
    values = settings.section("knowledge", KnowledgeConfig).values
    phone = (dept.phone if dept else "") or (values.get("borgerservice_phone", "") if human == HUMAN else "")
    schedule = directory.schedule(human)
    info: dict[str, Any] = {
        "tenant": tenant or settings.section("knowledge", KnowledgeConfig).tenant,
        "name": dept.name if dept else "Borgerservice",
        "phone": phone,
        "phone_uri": "tel:+45" + re.sub(r"\D", "", phone) if phone else "",
        "link": (dept.link if dept else "") or values.get("kk_url" if human != HUMAN else "kk_borgerservice_url", ""),
        "open_now": None, "hours_today": "", "hours": "", "next_opening": "",
        "privacy": PRIVACY.format(days=settings.section("store", StoreConfig).retention_days),
    }
    if schedule is None:
        return info
    info["open_now"] = schedule.is_open(now)
    info["hours"] = schedule.describe()
    local = now.astimezone(ZoneInfo(schedule.timezone))
    day = DANISH_DAYS[local.weekday()]
    reason = schedule.closed_reason(local.date())  # a holiday's name, "closed_dates" or ""
    intervals = [] if reason else sorted(map(parse_interval, getattr(schedule, DAYS[local.weekday()])))
    if schedule.always:
        info["hours_today"] = "Åbent hele døgnet."
    elif not intervals:
        holiday = f", {reason.lower()}" if reason and reason != "closed_dates" else ""
        info["hours_today"] = f"Lukket i dag ({day}{holiday})."
    else:
        spans = " og ".join(f"{_clock(a)}-{_clock(b)}" for a, b in intervals)
        info["hours_today"] = f"Åbent i dag ({day}) kl. {spans}."
    if not info["open_now"]:
        info["next_opening"] = f"Vi åbner igen {schedule.say_next_opening(now)}."
    return info


def _clock(t: dt.time) -> str:
    return f"{t.hour}.{t.minute:02d}"


async def widget_js(request: web.Request) -> web.Response:
    text = WIDGET_JS.read_text(encoding="utf-8")
    etag = f'"{hashlib.sha256(text.encode()).hexdigest()[:16]}"'
    headers = {**CORS, "Cache-Control": f"public, max-age={WIDGET_JS_MAX_AGE}", "ETag": etag,
               "X-Content-Type-Options": "nosniff"}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(text=text, content_type="application/javascript", charset="utf-8", headers=headers)


async def widget_demo(request: web.Request) -> web.Response:
    return web.Response(text=WIDGET_DEMO.read_text(encoding="utf-8"), content_type="text/html")


@web.middleware
async def origin_middleware(request: web.Request, handler):
    """The chat API's CORS: refuse pages of sites outside ``chat.allowed_origins`` (before any
    work), and give the allowed ones the headers their browser needs."""
    api = request.app.get(API_KEY)
    if api is None or not request.path.startswith("/api/chat"):
        return await handler(request)
    origin = request.headers.get("Origin")
    if not api.origins.allows(origin, request.host):
        CHAT_REQUESTS.labels("403").inc()
        api._note_refused("origin")
        return _error(403, f"pages of {origin} may not use this chat (chat.allowed_origins)")
    response = await handler(request)
    response.headers.update(api.origins.headers(origin))
    return response


def add_chat_routes(app: web.Application, service: ChatService) -> ChatApi:
    """Mount the chat API and widget on the ``voicebot serve`` web app; the chat's worker
    threads stop with the app."""
    api = ChatApi(service)
    app[SERVICE_KEY] = service
    app[API_KEY] = api
    app.middlewares.append(origin_middleware)
    app.router.add_post("/api/chat", api.chat)
    app.router.add_route("OPTIONS", "/api/chat", api.preflight)
    app.router.add_get("/api/chat/info", api.info)
    app.router.add_get("/chat", widget)
    app.router.add_get("/widget.js", widget_js)
    app.router.add_get("/widget-demo", widget_demo)
    app.on_cleanup.append(api.close)
    return api
