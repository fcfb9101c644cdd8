"""The SIP trunk to the municipality's telephone platform, and giving calls back over it.

Two real Asterisk 22 from the project's chroot: the project's own (asterisk/pbx, with the bot),
its trunk switched on by the real render step (`asterisk/pbx sync` with PBX_TRUNK_* settings),
and a second one that plays the contact-centre platform (tests/integration/trunk_platform.py:
other loopback addresses and ports, its own config and directories). A citizen's phone on the
platform calls the main number; the platform sends the call over the trunk to the bot; the
caller asks about rubbish collection and says yes to being put through; the department's
target (a test context in form 2 of dialplans/40-departments.conf: the platform's queue 4000)
gives the call back. Real SIP, RTP, SRTP and TLS; the words come from the declared test
recognizer (DESIGN.md §9).

* plain: the platform is known by its address (PBX_TRUNK=ip), UDP, G.711 A-law. The call is
  given back with a REFER: the platform's agent phone rings with X-Voicebot-Intent and
  X-Voicebot-Summary, and while caller and agent talk (audio both ways through the platform)
  the bot's Asterisk has no channel left: it is out of the media path.
* tls-srtp: the bot's Asterisk registers to the platform (PBX_TRUNK=register) over TLS
  (certificates made with openssl for this run), media SRTP (SDES), G.722. Same checks, plus
  what the platform saw on the wire (its SIP log): TLS, RTP/SAVP with a=crypto, the REFER.
* refused: the platform does not take REFER (603; G.711 mu-law): the bot's Asterisk calls the
  queue instead, with the headers on that INVITE, and stays in the call (two channels).

Each call also sends the caller's number in another of the platform's forms (0045..., 8
digits, +45...): on the bot's Asterisk the channel shows +4520123456 (sub-normalize-caller).
Afterwards the normal Asterisk's config is as before (trunk off, no test dialplan), and the
platform left no process or file. The trunk's listening sockets stay in the normal Asterisk
until its next restart (res_pjsip cannot close a transport on a reload; asterisk/pbx says so).
The caller barges in (a second into the greeting, a second into the answer), so each call
takes ~12 s; the module ~60 s with the bot's start.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time

import numpy as np
import pytest

from tests.integration.telephony import OPEN_TIME, PBX, BotProcess, cli, set_clock, wait_for
from tests.integration.trunk_platform import (PHONE_ADDR, PLATFORM_ADDR, PLATFORM_UDP, QUEUE, Platform, Trunk,
                                              make_certificates)
from voicebot.config import PROJECT_ROOT
from voicebot.sip.caller import RATE, AgentPhone, CallScript, LiveCall, place_call
from voicebot.sip.script import Step, call_headers, espeak_tts, new_ref, render
from voicebot.speech.audio import dbfs

pytestmark = pytest.mark.integration

MAIN = "33663366"
NORMALIZED = "+4520123456"
ETC = PROJECT_ROOT / "asterisk" / "chroot" / "etc" / "asterisk"
TARGET = "dept-test-platform"
TEST_DIALPLAN = f"""\
; written by tests/integration/test_trunk.py for its run; asterisk/pbx sync removes it
[{TARGET}]
exten => s,1,NoOp(trunk test: secure=${{CHANNEL(pjsip,secure)}} codec=${{CHANNEL(audionativeformat)}})
 same => n,Set(PLATFORM_QUEUE={QUEUE})
 same => n,Goto(dept-platform,s,1)
"""
SCRIPT = [Step(say="Mit affald er ikke blevet tømt"), Step(say="ja")]
LOUD = -45.0


def pbx_sync(env: dict[str, str] | None = None) -> str:
    """`asterisk/pbx sync` with these trunk settings (none: the checkout's own, normally off)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PBX_TRUNK") and k != "VOICEBOT_TRUNK_PASSWORD"}
    r = subprocess.run([str(PBX), "sync"], env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"asterisk/pbx sync failed:\n{r.stdout}{r.stderr}"
    return r.stderr


def install_test_dialplan() -> None:
    path = ETC / "dialplans" / "zz-test-trunk.conf"
    path.write_text(TEST_DIALPLAN)
    os.chown(path, 0, (ETC / "pjsip.conf").stat().st_gid)
    os.chmod(path, 0o640)
    cli("dialplan reload")


def channels() -> list[list[str]]:
    """The normal Asterisk's channels: concise fields (name, context, exten, ..., caller id, ...)."""
    return [line.split("!") for line in cli("core show channels concise").splitlines() if "!" in line]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("trunk-tls"))


@pytest.fixture(scope="module")
def trunk_bot(asterisk, tmp_path_factory):
    """The bot with the test recognizer; Affald og genbrug's target is the platform's queue."""
    config = ("speech:\n  asr:\n    engine: script\n"
              f"departments:\n  affald:\n    target: {TARGET}\n")
    bot = BotProcess(tmp_path_factory.mktemp("trunkbot"), config, env={"VOICEBOT_ALLOW_TEST_RECOGNIZER": "1"})
    pbx_sync()  # the checkout's config as it is now, so "before" and "after" compare like with like
    before = {p.name: p.read_bytes() for p in ETC.glob("*.conf")}
    try:
        yield bot
    finally:
        bot.stop()
        pbx_sync()  # trunk off again, the test dialplan gone
        after = {p.name: p.read_bytes() for p in ETC.glob("*.conf")}
        assert not (ETC / "pjsip_trunk.conf").exists() and not (ETC / "trunk-tls").exists()
        assert not (ETC / "dialplans" / "zz-test-trunk.conf").exists()
        assert after == before, "the normal Asterisk's config differs after the trunk test"
        assert "trunk" not in cli("pjsip show endpoints")


@pytest.fixture
def connect(trunk_bot, certs, tmp_path):
    """connect(trunk) -> the platform, up, with the bot's Asterisk's trunk switched on to it."""
    platforms: list[Platform] = []

    def up(trunk: Trunk) -> Platform:
        platform = Platform(trunk, tmp_path, certs if trunk.tls else None)
        platforms.append(platform)
        platform.start()
        platform.cli("pjsip set logger on")  # what the bot's Asterisk sends, for the checks
        out = pbx_sync(trunk.bot_env(certs))
        assert f"trunk on: PBX_TRUNK={trunk.mode}" in out, out
        install_test_dialplan()
        if trunk_bot.proc is None:
            trunk_bot.start()
        wait_for(trunk_bot.ari_connected, 15, "the bot to (re)connect to ARI after the reload")
        if trunk.mode == "register":
            wait_for(lambda: "Registered" in cli("pjsip show registrations"), 15,
                     "the bot's Asterisk to register to the platform")
        set_clock(OPEN_TIME)
        return platform

    yield up
    for platform in platforms:
        platform.stop()
        assert not platform.leftovers(), platform.leftovers()


def _tone(seconds: float) -> np.ndarray:
    return (np.sin(np.arange(int(RATE * seconds)) * 2 * np.pi * 440 / RATE) * 8000).astype(np.int16)


def _loud(frames) -> int:
    return sum(dbfs(f) > LOUD for f in frames)


class Seen:
    """What the test saw of one call, on both sides."""

    def __init__(self) -> None:
        self.bot_channels: list[list[str]] = []  # the bot's Asterisk, while the bot had the call
        self.channelstats = ""
        self.after_transfer: list[list[str]] = []  # the bot's Asterisk while caller and agent talk
        self.platform_channels = ""
        self.caller_heard_agent = 0  # loud frames at the caller after the bot's Asterisk let go
        self.agent_heard_caller = 0
        self.agent: AgentPhone | None = None
        self.times: dict[str, float] = {}  # ms since the answer


async def _converse(platform: Platform, caller_number: str, expect_bot_channels: int) -> tuple[Seen, object]:
    seen = Seen()
    agent = await AgentPhone("agent", platform.passwords["agent"], audio=_tone(6.0),
                             server=(PLATFORM_ADDR, PLATFORM_UDP), host=PHONE_ADDR).start()
    seen.agent = agent
    audio = render(SCRIPT, espeak_tts)
    hello = espeak_tts("Hej, jeg ringer om mit affald")
    headers = call_headers(SCRIPT, new_ref()) + [("P-Asserted-Identity", f"<sip:{caller_number}@{PLATFORM_ADDR}>")]

    async def drive(call: LiveCall) -> None:
        # barge-in (speaking while the bot talks stops it) keeps the call short: the request
        # a second into the greeting, "ja" a second into the answer, whose offer is then pending
        assert await call.wait_heard(0, 10) is not None, "no greeting"
        await call.sleep(1.0)
        seen.bot_channels = await asyncio.to_thread(channels)
        seen.channelstats = await asyncio.to_thread(cli, "pjsip show channelstats")
        seen.times["request"] = call.now_ms()
        await call.say(audio[0])
        assert await call.wait_heard(call.spoke_until_ms, 10) is not None, "no answer"
        seen.times["answer"] = call.now_ms()
        await call.sleep(1.0)
        await call.say(audio[1])
        seen.times["said_yes"] = call.now_ms()
        deadline = time.monotonic() + 25
        while not agent.answered and time.monotonic() < deadline and not call.ended:
            await call.sleep(0.1)
        assert agent.answered, "the platform's agent phone was not rung"
        seen.times["agent_answered"] = call.now_ms()
        # the bot's Asterisk lets go once the platform reports the transfer done (NOTIFY 200)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen.after_transfer = await asyncio.to_thread(channels)
            if len(seen.after_transfer) <= expect_bot_channels:
                break
            await call.sleep(0.1)
        since = call.now_ms()
        seen.times["bot_side_done"] = since
        heard_before = len(agent.heard)
        await call.say(hello)
        await call.sleep(0.5)
        seen.caller_heard_agent = sum(1 for t, loud in call.listener.loud if t >= since and loud)
        seen.agent_heard_caller = _loud(agent.heard[heard_before:])
        seen.after_transfer = await asyncio.to_thread(channels)  # still, at the end of the talk
        seen.platform_channels = await asyncio.to_thread(platform.cli, "core show channels concise")
        seen.times["end"] = call.now_ms()
        await call.hangup()

    try:
        report = await place_call(CallScript(MAIN, max_seconds=70, headers=headers), "caller",
                                  platform.passwords["caller"], (PLATFORM_ADDR, PLATFORM_UDP), PHONE_ADDR, drive=drive)
    finally:
        await asyncio.sleep(0.3)
        await agent.close()
    return seen, report


def call_through(platform: Platform, caller_number: str, expect_bot_channels: int, capsys) -> Seen:
    seen, report = asyncio.run(_converse(platform, caller_number, expect_bot_channels))
    assert report.answered, f"not answered: {report.status} {report.reason}\n{platform.log_tail()}"
    with capsys.disabled():  # when each step happened, ms after the answer
        print(f"\ntrunk {platform.trunk.mode}/{platform.trunk.transport}:",
              json.dumps({k: round(v) for k, v in seen.times.items()}))
    return seen


def _trunk_channel(seen: Seen) -> list[str]:
    found = [c for c in seen.bot_channels if c[0].startswith("PJSIP/trunk-")]
    assert len(found) == 1, f"no trunk channel on the bot's Asterisk while the bot had the call: {seen.bot_channels}"
    return found[0]


def _check_context_reached_agent(seen: Seen, route: str) -> None:
    invite = seen.agent.invites[0]
    assert invite.get("X-Platform-Route") == route, invite.get("X-Platform-Route")
    assert invite.get("X-Voicebot-Intent") == "affald"
    assert "affald" in invite.get("X-Voicebot-Summary").lower(), invite.get("X-Voicebot-Summary")


def _check_talk(seen: Seen) -> None:
    assert seen.caller_heard_agent > 10, "the caller did not hear the agent after the transfer"
    assert seen.agent_heard_caller > 10, "the agent did not hear the caller after the transfer"
    platform = [line.split("!")[0] for line in seen.platform_channels.splitlines() if "!" in line]
    assert any(c.startswith("PJSIP/caller-") for c in platform) and any(c.startswith("PJSIP/agent-") for c in platform), platform


def _refer_on_the_wire(platform: Platform) -> str:
    log = platform.log_path.read_text(errors="replace")
    refer = re.search(r"^REFER sip:.*?^Content-Length:", log, re.MULTILINE | re.DOTALL)
    assert refer, "the platform received no REFER"
    return refer.group(0)


def test_plain_trunk_refer_leaves_the_media_path(connect, capsys):
    platform = connect(Trunk(mode="ip", transport="udp", codecs="alaw,ulaw"))
    seen = call_through(platform, "004520123456", expect_bot_channels=0, capsys=capsys)
    trunk = _trunk_channel(seen)
    assert trunk[7] == NORMALIZED, f"caller id on the bot's Asterisk: {trunk[7]!r}"
    assert re.search(r"trunk-\S+.*\balaw\b", seen.channelstats), seen.channelstats
    _check_context_reached_agent(seen, "refer")
    assert seen.after_transfer == [], f"the bot's Asterisk is still in the call: {seen.after_transfer}"
    _check_talk(seen)
    refer = _refer_on_the_wire(platform)
    assert re.search(rf"Refer-To: <sip:{QUEUE}@[^?>]+\?X-Voicebot-Intent=affald&X-Voicebot-Summary=", refer), refer


def test_refused_refer_falls_back_to_a_call_with_the_headers(connect, capsys):
    platform = connect(Trunk(mode="ip", transport="udp", refer=False, codecs="ulaw"))
    seen = call_through(platform, NORMALIZED, expect_bot_channels=2, capsys=capsys)
    assert _trunk_channel(seen)[7] == NORMALIZED
    assert re.search(r"trunk-\S+.*\bulaw\b", seen.channelstats), seen.channelstats
    _check_context_reached_agent(seen, "invite")
    bot_side = sorted(c[0].split("-")[0] for c in seen.after_transfer)
    assert bot_side == ["PJSIP/trunk", "PJSIP/trunk"], f"expected the bot's Asterisk bridging in and out: {seen.after_transfer}"
    _check_talk(seen)
    assert "SIP/2.0 603" in platform.log_path.read_text(errors="replace"), "the platform did not refuse the REFER"


def test_tls_srtp_registering_trunk_refer(connect, capsys):
    platform = connect(Trunk(mode="register", transport="tls", srtp=True, codecs="g722"))
    seen = call_through(platform, "20123456", expect_bot_channels=0, capsys=capsys)
    assert _trunk_channel(seen)[7] == NORMALIZED
    assert re.search(r"trunk-\S+.*\bg722\b", seen.channelstats), seen.channelstats
    _check_context_reached_agent(seen, "refer")
    assert seen.after_transfer == [], f"the bot's Asterisk is still in the call: {seen.after_transfer}"
    _check_talk(seen)
    log = platform.log_path.read_text(errors="replace")
    assert re.search(r"Received SIP request .* from TLS:127\.0\.0\.1:", log), "no SIP over TLS from the bot's Asterisk"
    assert "UDP:127.0.0.1" not in log, "the bot's Asterisk sent SIP in clear"
    assert re.search(r"m=audio \d+ RTP/SAVP ", log) and "a=crypto:" in log, "no SRTP offer/answer (SDES) seen"
    _refer_on_the_wire(platform)
