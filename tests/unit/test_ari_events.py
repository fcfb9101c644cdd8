"""The ARI event reader against a real websocket on 127.0.0.1: a bad frame is skipped, not fatal."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from voicebot.telephony.ari import CONNECTED, AriClient, parse_event


async def test_a_bad_frame_is_skipped_and_the_next_stasis_start_arrives():
    async def events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("{not json")
        await ws.send_str("[1, 2]")
        await ws.send_str(json.dumps({"type": "StasisStart", "channel": {"id": "c1"}, "args": ["kff"]}))
        await ws.receive()  # until the client goes
        return ws

    app = web.Application()
    app.router.add_get("/ari/events", events)
    async with TestServer(app, host="127.0.0.1") as server:
        ari = AriClient(str(server.make_url("")).rstrip("/"), "u", "p", "voicebot")
        try:
            reader = ari.events()
            connected = await asyncio.wait_for(reader.__anext__(), 5)
            first = await asyncio.wait_for(reader.__anext__(), 5)
            await reader.aclose()
        finally:
            await ari.close()
    assert connected == {"type": CONNECTED}  # each (re)connect is announced: the app reconciles
    assert first["type"] == "StasisStart" and first["channel"]["id"] == "c1"


def test_parse_event():
    assert parse_event('{"type": "StasisEnd"}') == {"type": "StasisEnd"}
    assert parse_event("nonsense") is None and parse_event('"text"') is None
