"""The SMS outbox and gateways against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voicebot.config import load_settings
from voicebot.errors import ConfigError
from voicebot.sms import (LogGateway, SmsDispatcher, dispatcher_for_settings, open_gateway,
                          queue_for_caller)
from voicebot.sms.http_gateway import HttpGateway
from voicebot.store.sqlite import SqliteStore
from tests.unit.test_store import Clock

TOKEN = "s3cret-token-value"
NUMBER = "+4520123456"


class Provider:
    """A fake SMS provider that honours idempotency keys, answering from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        self.requests: list[dict] = []
        self.delivered: dict[str, list[dict]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("Authorization"),
                              "key": request.headers.get("Idempotency-Key")})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses.pop(0) if self.statuses else 200
        if status >= 300:
            return web.json_response({"error": f"rejected {body['to']}"}, status=status)
        key = body["idempotency_key"]
        if key not in self.delivered:  # a repeated key is acknowledged, not sent again
            self.delivered[key] = [body]
        return web.json_response({"id": key})


@pytest.fixture
async def provider():
    p = Provider()
    app = web.Application()
    app.router.add_post("/sms", p.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    p.url = str(server.make_url("/sms"))
    yield p
    await server.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    s = SqliteStore(tmp_path / "v.db", now=clock)
    yield s
    s.close()


def gateway(url: str, **kw) -> HttpGateway:
    kw.setdefault("backoff_base_s", 0.01)
    return HttpGateway(url, token=TOKEN, **kw)


def queued(store, text="Her er linket: https://www.kk.dk/pas"):
    cid = store.start_conversation(channel="voice", tenant="kff")
    return cid, store.queue_sms(cid, NUMBER, text, "pas")


async def test_message_is_sent_and_the_number_forgotten(provider, store):
    cid, message = queued(store)
    gw = gateway(provider.url)
    assert await SmsDispatcher(store, gw).drain_once() == 1
    await gw.close()
    [request] = provider.requests
    assert request["body"] == {"to": NUMBER, "text": "Her er linket: https://www.kk.dk/pas",
                               "idempotency_key": message.idempotency_key}
    assert request["auth"] == f"Bearer {TOKEN}" and request["key"] == message.idempotency_key
    [row] = store.sms_for(cid)
    assert row.status == "sent" and row.number is None and row.attempts == 1 and row.sent_at
    assert NUMBER[3:].encode() not in (store.path.read_bytes() + _wal(store))
    assert "number" not in row.as_dict()


def _wal(store) -> bytes:
    wal = store.path.with_name(store.path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


async def test_server_errors_are_retried_with_the_same_key(provider, store):
    provider.statuses = [500, 503]
    cid, message = queued(store)
    gw = gateway(provider.url, max_attempts=4)
    await SmsDispatcher(store, gw).drain_once()
    await gw.close()
    assert len(provider.requests) == 3
    assert {r["body"]["idempotency_key"] for r in provider.requests} == {message.idempotency_key}
    assert {r["key"] for r in provider.requests} == {message.idempotency_key}
    assert len(provider.delivered) == 1 and len(provider.delivered[message.idempotency_key]) == 1
    [row] = store.sms_for(cid)
    assert row.status == "sent" and row.attempts == 3


async def test_client_error_fails_at_once(provider, store, caplog):
    caplog.set_level(logging.DEBUG)
    provider.statuses = [400]
    cid, _ = queued(store)
    gw = gateway(provider.url)
    await SmsDispatcher(store, gw).drain_once()
    await gw.close()
    assert len(provider.requests) == 1 and provider.delivered == {}
    [row] = store.sms_for(cid)
    assert row.status == "failed" and row.attempts == 1 and row.number is None
    assert "400" in row.last_error
    # the provider echoed the number: it is redacted from the stored error and the log
    for text in (row.last_error, caplog.text, repr(gw)):
        assert NUMBER not in text and NUMBER[3:] not in text and TOKEN not in text
    assert await SmsDispatcher(store, gateway(provider.url)).drain_once() == 0  # final


async def test_timeouts_and_refused_connections_give_up_after_max_attempts(provider, store):
    provider.delay_s = 0.5
    cid, _ = queued(store)
    gw = gateway(provider.url, timeout_s=0.1, max_attempts=2)
    await SmsDispatcher(store, gw).drain_once()
    await gw.close()
    [row] = store.sms_for(cid)
    assert row.status == "failed" and row.attempts == 2 and "timed out" in row.last_error

    cid, _ = queued(store)
    gw = gateway("http://127.0.0.1:9/sms", max_attempts=2)  # discard port: nothing listens
    await SmsDispatcher(store, gw).drain_once()
    await gw.close()
    [row] = store.sms_for(cid)
    assert row.status == "failed" and row.attempts == 2 and "unreachable" in row.last_error
    assert TOKEN not in row.last_error


async def test_log_gateway_keeps_messages_queued(store, clock, caplog, provider):
    caplog.set_level(logging.INFO)
    cid, message = queued(store)
    dispatcher = SmsDispatcher(store, LogGateway(hold_s=3600))
    assert await dispatcher.drain_once() == 1
    assert await dispatcher.drain_once() == 0  # held, not logged again at every poll
    [row] = store.sms_for(cid)
    assert row.status == "queued" and row.number == NUMBER and row.attempts == 0
    lines = [r for r in caplog.records if r.name == "voicebot.sms.gateway"]
    assert len(lines) == 1 and lines[0].sms == message.id and NUMBER not in caplog.text
    # a real gateway configured later sends what the log gateway held
    gw = gateway(provider.url, max_attempts=1)
    real = SmsDispatcher(store, gw, poll_s=0.05)
    task = asyncio.create_task(real.run())
    for _ in range(100):
        if store.sms_for(cid)[0].status == "sent":
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await gw.close()
    assert store.sms_for(cid)[0].status == "sent" and len(provider.delivered) == 1


async def test_a_claim_held_by_a_dead_sender_is_retried_once_its_lease_ends(provider, store, clock):
    cid, message = queued(store)
    [claimed] = store.claim_sms(10, lease_s=60)  # a sender took it and died before marking it
    gw = gateway(provider.url)
    dispatcher = SmsDispatcher(store, gw)
    assert await dispatcher.drain_once() == 0
    clock.now += dt.timedelta(seconds=61)
    assert await dispatcher.drain_once() == 1
    await gw.close()
    assert claimed.idempotency_key == provider.requests[0]["body"]["idempotency_key"]
    assert store.sms_for(cid)[0].status == "sent"


async def test_run_loop_sends_when_woken(provider, store):
    gw = gateway(provider.url)
    dispatcher = SmsDispatcher(store, gw, poll_s=30)
    task = asyncio.create_task(dispatcher.run())
    await asyncio.sleep(0.05)
    cid = store.start_conversation(channel="voice", tenant="kff")
    assert queue_for_caller(store, cid, "20 12 34 56", "Link", "pas") is not None
    dispatcher.wake()
    for _ in range(100):
        if provider.delivered:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await gw.close()
    assert provider.requests[0]["body"]["to"] == NUMBER


def test_queue_for_caller_only_for_danish_mobiles(store):
    cid = store.start_conversation(channel="voice", tenant="kff")
    assert queue_for_caller(store, cid, "33663366", "Link") is None
    assert queue_for_caller(store, cid, None, "Link") is None
    message = queue_for_caller(store, cid, "004591234567", "Ring 33 66 33 66, cpr 0101901234")
    assert message.number == "+4591234567" and NUMBER not in repr(message)
    # our own phone number stays in the SMS; a CPR number never goes out
    assert store.sms_for(cid)[0].text == "Ring 33 66 33 66, cpr [CPR]"


def test_gateway_from_config(tmp_path, monkeypatch, store):
    monkeypatch.delenv("VOICEBOT_SMS_TOKEN", raising=False)
    assert isinstance(open_gateway(load_settings()), LogGateway)
    config = tmp_path / "site.yaml"
    config.write_text("sms:\n  gateway: http\n  http:\n    url: http://127.0.0.1:1/sms\n")
    with pytest.raises(ConfigError) as err:
        open_gateway(load_settings(config))
    assert "site.yaml:2" in str(err.value) and "VOICEBOT_SMS_TOKEN" in str(err.value)
    monkeypatch.setenv("VOICEBOT_SMS_TOKEN", TOKEN)
    gw = open_gateway(load_settings(config))
    assert isinstance(gw, HttpGateway) and TOKEN not in repr(gw) and TOKEN not in str(vars(gw).get("url"))
    assert isinstance(dispatcher_for_settings(load_settings(config), store, gw), SmsDispatcher)
    config.write_text("sms:\n  gateway: http\n")
    with pytest.raises(ConfigError, match="sms.http"):
        open_gateway(load_settings(config))
    config.write_text("sms:\n  http:\n    max_attempts: 0\n")
    with pytest.raises(ConfigError, match=r"site.yaml:3: sms.http.max_attempts"):
        open_gateway(load_settings(config))
