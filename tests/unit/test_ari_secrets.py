"""ARI credentials never reach a log: aiohttp's error reprs carry the request headers
(``Authorization: Basic ...``), so the ARI client turns every failure into its own error with the
type and message only, and the call handler logs that."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import traceback

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voicebot.errors import AriError, TelephonyError
from voicebot.logs import KeyValueFormatter
from voicebot.telephony.ari import AriClient

PASSWORD = "s3cret-Ari-Pa55word"
TOKEN = base64.b64encode(f"voicebot:{PASSWORD}".encode()).decode()


def assert_clean(text: str, where: str) -> None:
    assert PASSWORD not in text and TOKEN not in text, f"ARI credentials in {where}:\n{text}"


def everything_logged(caplog) -> str:
    formatter = KeyValueFormatter()
    return "\n".join(formatter.format(r) for r in caplog.records)


def the_whole_error(exc: BaseException) -> str:
    """What any log line could show of ``exc``: str, repr, the traceback with its chain."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


@pytest.fixture
async def ari_server():
    async def refuse(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Basic {TOKEN}"  # the client does send it
        return web.json_response({"message": "Channel not found"}, status=404)

    async def crash(request: web.Request) -> web.Response:
        raise web.HTTPInternalServerError(text="boom")

    async def events(request: web.Request) -> web.Response:
        return web.Response(status=401, text="Unauthorized")

    app = web.Application()
    app.router.add_post("/ari/channels/{id}/answer", refuse)
    app.router.add_post("/ari/channels/{id}/hangup", crash)
    app.router.add_get("/ari/events", events)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


async def test_http_errors_carry_no_credentials(ari_server, caplog):
    caplog.set_level(logging.DEBUG)
    ari = AriClient(ari_server, "voicebot", PASSWORD, "voicebot")
    try:
        for path in ("/channels/c1/answer", "/channels/c1/hangup"):
            with pytest.raises(AriError) as err:
                await ari.request("POST", path)
            assert_clean(the_whole_error(err.value), f"the error of POST {path}")
            logging.getLogger("voicebot.call").error("call failed", extra={"error": str(err.value)},
                                                     exc_info=err.value)
    finally:
        await ari.close()
    assert_clean(everything_logged(caplog), "the log")


async def test_a_refused_event_socket_logs_no_credentials(ari_server, caplog):
    caplog.set_level(logging.DEBUG)
    ari = AriClient(ari_server, "voicebot", PASSWORD, "voicebot", reconnect_max_seconds=0.1)
    reader = ari.events()
    task = asyncio.ensure_future(reader.__anext__())
    await asyncio.sleep(0.5)  # a few refused handshakes (401), each logged
    await ari.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await reader.aclose()
    logged = everything_logged(caplog)
    assert "ARI not reachable" in logged and "401" in logged
    assert_clean(logged, "the log")


async def test_an_unreachable_ari_gives_an_error_without_the_aiohttp_chain(caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ari = AriClient(f"http://127.0.0.1:{port}", "voicebot", PASSWORD, "voicebot")
    try:
        with pytest.raises(TelephonyError) as err:
            await ari.request("GET", "/channels")
    finally:
        await ari.close()
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no aiohttp error attached
    assert_clean(the_whole_error(err.value), "the error")
    logging.getLogger("voicebot.call").error("call failed", exc_info=err.value)
    assert_clean(everything_logged(caplog), "the log")
