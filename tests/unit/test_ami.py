"""AMI client: the Danish queue sentence, the wait formula, and panoramisk against a local AMI
server on 127.0.0.1 that replays replies recorded from the project's Asterisk 22."""

from __future__ import annotations

import asyncio
import time
import types

import pytest

from voicebot.commands.doctor import check_ami
from voicebot.config import AsteriskConfig
from voicebot.telephony.ami import (AmiClient, AmiRefused, AmiUnreachable, QueueInfo, check_login,
                                    expected_wait, queue_sentence, wait_phrase)

SECRET = "s3cret"
BANNER = "Asterisk Call Manager/11.0.0\r\n"

# Recorded from Asterisk 22.10.1 (`asterisk/pbx`), ActionIDs replaced by {id}; the QueueSummary
# numbers are edited to describe a busy queue.
RECORDED = {
    "login": "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n",
    "login-refused": "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n",
    "queuesummary": (
        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Queue summary will follow\r\n\r\n"
        "Event: QueueSummary\r\nQueue: borgerservice\r\nLoggedIn: 2\r\nAvailable: 0\r\nCallers: 3\r\n"
        "HoldTime: 150\r\nTalkTime: 120\r\nLongestHoldTime: 200\r\nActionID: {id}\r\n\r\n"
        "Event: QueueSummaryComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"),
    "queuesummary-unknown": (
        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Queue summary will follow\r\n\r\n"
        "Event: QueueSummaryComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"),
    "ping": "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1796161523.510819\r\n\r\n",
    "userevent": "Response: Success\r\nActionID: {id}\r\nMessage: Event Sent\r\n\r\n",
    "logoff": "Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n",
}


class FakeAmi:
    """A local AMI server: banner, Login, then one recorded reply per action (optionally late or
    never). Records every action it reads, one dict of headers each."""

    def __init__(self, *, delays: dict[str, float] | None = None, silent: set[str] = frozenset()) -> None:
        self.delays = delays or {}
        self.silent = silent  # actions never answered
        self.actions: list[dict[str, str]] = []
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeAmi:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def config(self, secret: str = SECRET) -> AsteriskConfig:
        return AsteriskConfig(ami_host="127.0.0.1", ami_port=self.port, ami_secret=secret,
                              reconnect_max_seconds=0.2)

    def drop(self) -> None:
        """Close every connection from the server side (Asterisk restarting)."""
        for w in self.writers:
            w.close()
        self.writers.clear()

    def names(self) -> list[str]:
        return [a.get("action", "").lower() for a in self.actions]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        writer.write(BANNER.encode())
        try:
            while True:
                block = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
                headers = {k.lower(): v for k, v in headers.items()}
                self.actions.append(headers)
                if not await self._answer(headers, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> bool:
        name = headers.get("action", "").lower()
        if name in self.silent:
            return True
        if name in self.delays:
            await asyncio.sleep(self.delays[name])
        key = name
        if name == "login" and headers.get("secret") != SECRET:
            key = "login-refused"
        elif name == "queuesummary" and headers.get("queue") != "borgerservice":
            key = "queuesummary-unknown"
        writer.write(RECORDED[key].format(id=headers.get("actionid", "")).encode())
        await writer.drain()
        return key not in ("login-refused", "logoff")  # Asterisk hangs up after these


async def until(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def info(callers: int = 0, logged_in: int = 2, available: int = 0, wait: float | None = None) -> QueueInfo:
    return QueueInfo("borgerservice", callers, logged_in, available, 0.0, wait)


# ---------------------------------------------------------------------------------------------
# pure: sentence and formula


@pytest.mark.parametrize("queue, said", [
    (None, None),
    (info(callers=3, logged_in=0), "Der er ingen medarbejdere ledige lige nu."),
    (info(callers=0, available=1, wait=0.0), "Der er ingen foran dig."),
    (info(callers=0, wait=None), "Der er ingen foran dig."),
    (info(callers=0, wait=200), "Der er ingen foran dig. Den forventede ventetid er cirka 3 minutter."),
    (info(callers=1, wait=30), "Der er én foran dig. Den forventede ventetid er under et minut."),
    (info(callers=3, wait=240), "Der er 3 foran dig. Den forventede ventetid er cirka 4 minutter."),
    (info(callers=2, wait=None), "Der er 2 foran dig."),
])
def test_queue_sentence(queue, said):
    assert queue_sentence(queue) == said


@pytest.mark.parametrize("seconds, phrase", [
    (0, "under et minut"), (59, "under et minut"), (60, "cirka et minut"), (89, "cirka et minut"),
    (90, "cirka 2 minutter"), (240, "cirka 4 minutter"), (600, "cirka 10 minutter"),
    (13 * 60, "cirka 15 minutter"), (22 * 60, "cirka 20 minutter"), (57 * 60, "cirka 55 minutter"),
    (3600, "over en time"), (3 * 3600, "over en time"),
])
def test_wait_phrase_rounds_like_a_person(seconds, phrase):
    assert wait_phrase(seconds) == phrase


@pytest.mark.parametrize("callers, logged_in, available, hold, talk, wait", [
    (3, 0, 0, 100, 100, None),     # nobody logged in: no estimate (the sentence says so)
    (0, 2, 1, 100, 100, 0.0),      # a free agent takes you at once
    (2, 3, 3, 100, 100, 0.0),      # more free agents than callers
    (3, 2, 0, 150, 120, 240.0),    # (3 ahead + you) × 120 s / 2 agents
    (0, 1, 0, 50, 180, 180.0),     # the one agent is busy: one average call
    (4, 2, 1, 0, 60, 120.0),       # one goes to the free agent, 4 left for 2 agents
    (3, 2, 0, 150, 0, 150.0),      # no talk time yet: Asterisk's average hold time as it is
    (3, 2, 0, 0, 0, None),         # no history at all
])
def test_expected_wait(callers, logged_in, available, hold, talk, wait):
    assert expected_wait(callers, logged_in, available, hold, talk) == wait


def test_queue_info_from_recorded_summary():
    event = {"Event": "QueueSummary", "Queue": "borgerservice", "LoggedIn": "0", "Available": "0",
             "Callers": "0", "HoldTime": "0", "TalkTime": "0", "LongestHoldTime": "0"}
    assert QueueInfo.from_summary(event) == QueueInfo("borgerservice", 0, 0, 0, 0.0, None, 0.0)


# ---------------------------------------------------------------------------------------------
# panoramisk against the fake server


async def test_queue_status_from_replayed_summary():
    async with FakeAmi() as ami:
        client = AmiClient(ami.config())
        assert await client.start(wait=2)
        got = await client.queue_status("borgerservice")
        assert got == QueueInfo("borgerservice", callers=3, logged_in=2, available=0, holdtime_s=150.0,
                                expected_wait_s=240.0, talktime_s=120.0)
        assert queue_sentence(got) == "Der er 3 foran dig. Den forventede ventetid er cirka 4 minutter."
        assert await client.queue_status("nosuchqueue") is None
        login = ami.actions[0]
        assert login["action"] == "Login" and login["events"] == "off"
        await client.close()


async def test_slow_ami_gives_none_within_the_budget_and_forgets_the_action():
    async with FakeAmi(delays={"queuesummary": 1.0}) as ami:
        client = AmiClient(ami.config())
        assert await client.start(wait=2)
        t0 = time.monotonic()
        assert await client.queue_status("borgerservice", timeout=0.5) is None
        assert time.monotonic() - t0 < 0.6
        assert client._manager is not None and not client._manager.protocol.responses  # no leak
        await asyncio.sleep(0.7)  # the late reply arrives and is ignored
        assert client.connected
        ami.delays.clear()
        assert (await client.queue_status("borgerservice")).callers == 3
        await client.close()


async def test_reconnects_after_the_server_drops_and_never_resends():
    async with FakeAmi(silent={"queuesummary"}) as ami:
        client = AmiClient(ami.config())
        assert await client.start(wait=2)
        pending = asyncio.create_task(client.queue_status("borgerservice", timeout=2.0))
        await until(lambda: "queuesummary" in ami.names())
        t0 = time.monotonic()
        ami.drop()
        assert await pending is None
        assert time.monotonic() - t0 < 0.5  # the waiter learns of the loss at once
        await until(lambda: client.connected and ami.connections == 2)
        await asyncio.sleep(0.2)
        assert ami.names().count("queuesummary") == 1  # panoramisk did not resend it
        ami.silent = set()
        assert (await client.queue_status("borgerservice")).logged_in == 2
        await client.close()


async def test_unanswered_ping_makes_it_reconnect():
    async with FakeAmi(silent={"ping"}) as ami:
        client = AmiClient(ami.config(), ping_interval=0.1, ping_timeout=0.1)
        assert await client.start(wait=2)
        await until(lambda: ami.connections >= 2 and client.connected)
        await client.close()


async def test_close_logs_off_reads_goodbye_and_stops_reconnecting():
    async with FakeAmi() as ami:
        client = AmiClient(ami.config())
        assert await client.start(wait=2)
        await client.close()
        assert ami.names()[-1] == "logoff"
        assert not client.connected
        await asyncio.sleep(0.5)
        assert ami.connections == 1


async def test_refused_login_is_not_connected_and_does_not_block():
    async with FakeAmi() as ami:
        client = AmiClient(ami.config(secret="wrong"))
        t0 = time.monotonic()
        assert not await client.start(wait=0.3)
        assert time.monotonic() - t0 < 0.5
        assert await client.queue_status("borgerservice") is None
        await client.user_event("VoicebotTest")  # dropped, no exception
        await client.close()
        with pytest.raises(AmiRefused):
            await check_login(ami.config(secret="wrong"))


async def test_unreachable_ami_keeps_retrying_quietly():
    async with FakeAmi() as ami:
        port = ami.port
    client = AmiClient(AsteriskConfig(ami_port=port, ami_secret=SECRET, reconnect_max_seconds=0.2))
    assert not await client.start(wait=0.2)
    t0 = time.monotonic()
    assert await client.queue_status("borgerservice") is None
    await client.user_event("VoicebotTest", queue="borgerservice")
    assert time.monotonic() - t0 < 0.05
    await client.close()
    with pytest.raises(AmiUnreachable) as exc:
        await check_login(AsteriskConfig(ami_port=port, ami_secret=SECRET))
    assert not exc.value.connected


async def test_user_event_headers_cannot_inject_actions():
    async with FakeAmi() as ami:
        client = AmiClient(ami.config())
        assert await client.start(wait=2)
        await client.user_event("VoicebotTransfer\r\nAction: Originate", queue="borgerservice",
                                note="a\r\nAction: Originate\r\n\r\nAction: Command", ActionID="x")
        await client.close()
    assert ami.names() == ["login", "userevent", "logoff"]
    event = ami.actions[1]
    assert event["userevent"] == "VoicebotTransfer Action: Originate"
    assert event["queue"] == "borgerservice"
    assert event["note"] == "a Action: Originate Action: Command"
    assert event["actionid"] != "x"


async def test_user_event_is_bounded_when_ami_does_not_answer():
    async with FakeAmi(silent={"userevent"}) as ami:
        client = AmiClient(ami.config(), event_timeout=0.2)
        assert await client.start(wait=2)
        t0 = time.monotonic()
        await client.user_event("VoicebotTest")
        assert time.monotonic() - t0 < 0.4
        await client.close()


# ---------------------------------------------------------------------------------------------
# doctor


async def test_doctor_ami_check_in_plain_words():
    async with FakeAmi() as ami:
        ok = await check_ami(types.SimpleNamespace(asterisk=ami.config()))
        refused = await check_ami(types.SimpleNamespace(asterisk=ami.config(secret="wrong")))
        port = ami.port
    gone = await check_ami(types.SimpleNamespace(asterisk=AsteriskConfig(ami_port=port, ami_secret=SECRET)))
    assert ok.ok and "login as 'voicebot' ok" in ok.detail
    assert not refused.ok and "refused" in refused.detail and "secret" in refused.detail
    assert not gone.ok and "not reachable" in gone.detail and "Asterisk running" in gone.detail
    assert ami.names().count("logoff") == 1  # the successful check logged off


async def test_doctor_ami_check_when_login_gets_no_answer():
    async with FakeAmi(silent={"login"}) as ami:
        cfg = ami.config()
        from voicebot.commands import doctor

        check = await doctor.check_ami(types.SimpleNamespace(asterisk=cfg), timeout=0.3)
    assert not check.ok and "no answer to Login" in check.detail
