"""A thin ARI client on aiohttp: one REST method and a reconnecting event stream.

Why not ari-py / aioari / asyncari / ari-client: see DESIGN.md §4 (Python 2 only, no reconnect,
hangs or spins when the websocket drops). This client does two things:

* ``await ari.request("POST", "/channels/{id}/answer")`` — REST with HTTP basic auth (never
  credentials in the query string); returns parsed JSON (or None), raises ``AriError``.
* ``async for event in ari.events():`` — the application's events; when the websocket drops
  (Asterisk restart) it reconnects with exponential backoff, forever, until ``close()``. Each
  (re)connect yields a ``{"type": CONNECTED}`` event first, so the app can reconcile its calls
  with what Asterisk still has (events of the gap are lost).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from voicebot.errors import AriError, TelephonyError

log = logging.getLogger("voicebot.ari")

CONNECTED = "VoicebotAriConnected"  # the synthetic event yielded on each (re)connect


class AriClient:
    def __init__(self, url: str, user: str, password: str, app: str, *,
                 reconnect_max_seconds: float = 5.0, request_timeout: float = 10.0) -> None:
        self.base = url.rstrip("/") + "/ari"
        self.app = app
        self.auth = aiohttp.BasicAuth(user, password)
        self.reconnect_max = reconnect_max_seconds
        self.timeout = aiohttp.ClientTimeout(total=request_timeout)
        self.connected = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._closing = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auth=self.auth, timeout=self.timeout)
        return self._session

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: dict[str, Any] | None = None) -> Any:
        """Call ARI. ``params`` go in the query string (booleans as true/false)."""
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with self.session.request(method, self.base + path, params=query, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise AriError(method, path, resp.status, text)
                return json.loads(text) if text else None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # the type and message only: a repr of some aiohttp errors carries the request headers
            raise TelephonyError(f"ARI {method} {path} failed: {type(exc).__name__}: {exc}") from None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Yield events for our app forever, reconnecting with backoff when the socket drops."""
        ws_url = self.base.replace("http", "ws", 1) + f"/events?app={quote(self.app)}&subscribeAll=false"
        delay = 0.25
        while not self._closing:
            try:
                async with self.session.ws_connect(ws_url, heartbeat=10.0, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                    log.info("ARI connected", extra={"app": self.app, "url": self.base})
                    self.connected.set()
                    delay = 0.25
                    yield {"type": CONNECTED}
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            event = parse_event(msg.data)
                            if event is not None:
                                yield event
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if not self._closing:
                    log.warning("ARI not reachable", extra={"error": f"{type(exc).__name__}: {exc}"[:200],
                                                            "retry_in": round(delay, 2)})
            finally:
                if self.connected.is_set():
                    self.connected.clear()
                    if not self._closing:
                        log.warning("ARI connection lost; reconnecting")
            if self._closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max)

    async def close(self) -> None:
        self._closing = True
        if self._session is not None:
            await self._session.close()


def parse_event(data: str) -> dict[str, Any] | None:
    """One websocket frame as an event; a frame that is not a JSON object is logged and skipped,
    so one bad frame never ends the reader (and with it every call's events)."""
    try:
        event = json.loads(data)
    except ValueError as exc:
        log.warning("ARI sent a frame that is not JSON; skipped", extra={"bytes": len(data), "error": str(exc)})
        return None
    if not isinstance(event, dict):
        log.warning("ARI sent a frame that is not an object; skipped", extra={"bytes": len(data)})
        return None
    return event


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
