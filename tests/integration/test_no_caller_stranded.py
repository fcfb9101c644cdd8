"""No caller stranded: a killed bot, overload, queue dead-ends, odd numbers and cut-short calls,
on real calls through the real Asterisk 22.

Call-flow tests use the declared test recognizer (DESIGN.md §9); the bot, SIP, RTP, VAD, TTS,
the dialplan (dead-man timer, queue checks) and the store are all real.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.telephony import (CLOSED_TIME, OPEN_TIME, BotProcess, cli, set_clock, sip_password,
                                         wait_for)
from tests.integration.test_phone_conversation import _record, _tone, _tts
from voicebot.config import secret
from voicebot.sip.caller import AgentPhone, CallScript, place_call
from voicebot.sip.script import Step, new_ref, render, run_script

pytestmark = pytest.mark.integration

MAIN = "33663366"
TEST_RECOGNIZER = {"VOICEBOT_ALLOW_TEST_RECOGNIZER": "1"}


def _bot(tmp_path, extra: str = "") -> BotProcess:
    proc = BotProcess(tmp_path, "speech:\n  asr:\n    engine: script\n" + extra, env=TEST_RECOGNIZER)
    proc.start()
    return proc


def _calls_started(bot: BotProcess) -> int:
    return bot.log().count("'call started'")


def _kill(bot: BotProcess) -> float:
    """SIGKILL the bot (no hand-back, no clean-up); returns the moment it died."""
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGKILL)
    bot.proc.wait(5)
    killed = time.monotonic()
    bot.proc = None
    bot._log.close()
    return killed


def _app_resources() -> tuple[list[str], list[str]]:
    """The channels and bridges Asterisk still holds for the voicebot app (ARI's own answer)."""
    request = urllib.request.Request("http://127.0.0.1:8088/ari/applications/voicebot")
    token = base64.b64encode(f"voicebot:{secret('ARI_PASSWORD')}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            app = json.load(reply)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # no bot connected and nothing left: Asterisk forgot the app
            return [], []
        raise
    return app.get("channel_ids", []), app.get("bridge_ids", [])


def _call_during_kill(bot: BotProcess, restart: bool) -> tuple[float, AgentPhone, object]:
    """A caller in the greeting when the bot is SIGKILLed; returns (seconds from the kill to the
    agent's phone ringing, the agent, the call report)."""
    set_clock(OPEN_TIME)
    box: dict = {}

    async def go():
        agent = await AgentPhone("agent1", sip_password("agent1"), audio=_tone()).start()
        box["agent"] = agent
        try:
            box["report"] = await place_call(CallScript(MAIN, max_seconds=30, quiet_hangup_s=60), "softphone",
                                             sip_password())
        finally:
            await agent.close()

    before = _calls_started(bot)
    t = threading.Thread(target=lambda: asyncio.run(go()))
    t.start()
    wait_for(lambda: _calls_started(bot) > before, 10, "the bot to take the call")
    time.sleep(1.0)  # mid-greeting
    killed = _kill(bot)
    if restart:
        bot.start()
    wait_for(lambda: bool(box.get("agent") and box["agent"].rung_at), 20, "the agent's phone to ring")
    rang = box["agent"].rung_at[0] - killed
    t.join(40)
    return rang, box["agent"], box["report"]


def test_sigkill_mid_greeting_then_restart_rings_the_agent_within_10_s(asterisk, tmp_path):
    bot = _bot(tmp_path)
    try:
        rang, agent, report = _call_during_kill(bot, restart=True)
        print(f"\nSIGKILL -> restart -> agent rings: {rang:.2f} s")
        assert report.answered and agent.answered
        assert rang <= 10.0, f"the agent rang {rang:.1f} s after the kill"
        assert "'handing back a call a previous bot left in Stasis'" in bot.log()
        # the dead bot's media leg and bridge are gone, not left in Asterisk forever
        wait_for(lambda: _app_resources() == ([], []), 10, "the dead bot's media leg to be deleted")
    finally:
        bot.stop()


def test_sigkill_without_restart_the_dead_man_timer_takes_the_caller_to_a_human(asterisk, tmp_path):
    bot = _bot(tmp_path)
    rang, agent, report = _call_during_kill(bot, restart=False)
    print(f"\nSIGKILL, no restart -> agent rings: {rang:.2f} s (voice.deadman_s = 8)")
    assert report.answered and agent.answered
    # bounded by the dead-man window (8 s) plus the "stilles videre" line the human route plays
    assert rang <= 8.0 + 4.0, f"the agent rang {rang:.1f} s after the kill; the dead-man window is 8 s"
    # what the dead bot left in Asterisk: its ExternalMedia channel times out with the same timer;
    # the next bot to connect deletes the bridge
    bot.start()
    try:
        wait_for(lambda: _app_resources() == ([], []), 15, "the dead bot's leftovers to be cleaned up")
    finally:
        bot.stop()


# ---- overload ------------------------------------------------------------------------------------

OVERLOAD = """voice:
  max_calls: 2
  hold_after_s: 1.0
  decode_timeout_s: 4.0
"""


async def _scripted(script: list[Step], timeout: float = 50.0):
    ref = new_ref()
    report = await run_script(script, render(script, _tts), MAIN, "softphone", sip_password(), ref=ref,
                              timeout=timeout, caller_id="+4520123456")
    return ref, report


def test_over_capacity_goes_to_a_human_and_slow_recognition_never_ends_as_resolved(asterisk, tmp_path):
    """Two calls fill the bot (max_calls 2): one is held while a slow decode finishes and gets
    its answer, one's decode never finishes in time and goes to a human. A third caller, over
    capacity, reaches the human queue (the agent's phone) at once."""
    bot = _bot(tmp_path, OVERLOAD)
    set_clock(OPEN_TIME)
    slow = [Step(wait_bot=True), Step(say="!slow 2.5 Jeg har mistet mit pas"), Step(wait_bot=True),
            Step(say="nej"), Step(wait_bot=True), Step(hangup=True)]
    stuck = [Step(wait_bot=True), Step(say="!slow 30 Jeg har mistet mit pas"), Step(wait=25.0), Step(hangup=True)]

    async def go():
        agent = await AgentPhone("agent1", sip_password("agent1"), audio=_tone()).start()
        try:
            first = asyncio.ensure_future(_scripted(slow))
            second = asyncio.ensure_future(_scripted(stuck))
            await asyncio.sleep(1.5)  # both in the bot
            placed = time.monotonic()
            extra = await place_call(CallScript(MAIN, max_seconds=6, quiet_hangup_s=60), "softphone", sip_password())
            return agent, placed, extra, await first, await second
        finally:
            await agent.close()

    try:
        agent, placed, extra, (slow_ref, slow_report), (stuck_ref, _) = asyncio.run(go())
        assert extra.answered
        # at once: the human route's "stilles videre" line (~3 s), then the agent's phone rings
        assert agent.rung_at and agent.rung_at[0] - placed < 6.0, "the caller over capacity did not reach a human"
        assert "'call limit reached: the call goes to the human route'" in bot.log()

        held = _record(bot, slow_ref)
        assert held["outcome"] == "resolved"
        assert [t["intent"] for t in held["turns"] if t["decision"] == "answer"] == ["pas-mistet"]
        assert "'recognition is slow: holding line'" in bot.log()

        lost = _record(bot, stuck_ref)
        assert lost["outcome"] != "resolved", "a call whose words were never recognized ended as resolved"
        assert not [t for t in lost["turns"] if t["decision"] == "answer"]
        assert len(agent.rung_at) == 2, "the caller whose decode timed out was not handed to the agent"
    finally:
        bot.stop()


# ---- queue dead-ends and numbers --------------------------------------------------------------------

def test_empty_queue_says_hours_at_once_instead_of_ringing(asterisk, bot):
    """Open hours, nobody logged in: the caller hears the all-busy message (with the hours and
    kk.dk) within seconds and the PBX ends the call, instead of 15 minutes of ringing."""
    set_clock(OPEN_TIME)
    report = asyncio.run(place_call(CallScript("2000", max_seconds=60, quiet_hangup_s=60), "softphone",
                                    sip_password()))
    assert report.answered
    assert report.hangup_by == "bot", "the PBX should end the call after the message"
    assert report.duration_s < 30, f"the caller waited {report.duration_s:.0f} s"
    assert report.bot_audio_seconds > 8  # the message with the opening hours, not a bare hang-up


@pytest.mark.parametrize("number", ["+4533663366", "004533663366", "12345678", "+4612345678"])
def test_odd_and_unknown_numbers_reach_the_bot(bot, number):
    set_clock(CLOSED_TIME)
    before = _calls_started(bot)
    report = asyncio.run(place_call(CallScript(number, max_seconds=4), "softphone", sip_password()))
    assert report.answered, f"{number}: {report.status} {report.reason}"
    assert _calls_started(bot) > before
    assert report.bot_audio_seconds > 1


# ---- cut-short calls leak nothing -------------------------------------------------------------------

def test_200_calls_hung_up_at_random_moments_leak_nothing(bot):
    set_clock(CLOSED_TIME)
    rng = random.Random(8)

    async def one(sem: asyncio.Semaphore, hold: float):
        async with sem:
            try:
                await place_call(CallScript(MAIN, max_seconds=10), "softphone", sip_password(),
                                 drive=lambda call: asyncio.sleep(hold))  # then the caller hangs up
            except Exception as exc:  # noqa: BLE001 - a call the PBX refused under load is fine here
                return exc
        return None

    async def burst(n: int):
        sem = asyncio.Semaphore(10)
        # most hang up during the set-up (answer, bridge, ExternalMedia), some in the greeting
        holds = [rng.choice((rng.uniform(0.0, 0.25), rng.uniform(0.0, 2.0))) for _ in range(n)]
        return await asyncio.gather(*(one(sem, h) for h in holds))

    def idle() -> bool:
        return bot.health().get("calls") == 0

    # warm up: the thread pools (TTS, store, ASR) grow on demand up to their fixed size
    asyncio.run(burst(20))
    wait_for(idle, 30, "the warm-up calls to end")
    time.sleep(16)  # idle keep-alive connections to ARI close after 15 s
    baseline = bot.health()
    last: dict = {}

    def settled() -> bool:
        last.update(bot.health())
        return (last.get("calls") == 0 and last.get("tasks") == baseline["tasks"]
                and last.get("fds") <= baseline["fds"]
                and last.get("threads_outside_pools") == baseline["threads_outside_pools"])

    # 2 x 100 calls: tasks, fds and the threads outside the pools return to the baseline after
    # each; the pools may still grow on demand, but never past their fixed size
    for _ in range(2):
        asyncio.run(burst(100))
        try:
            wait_for(settled, 30, "the bot back to its baseline")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {baseline} -> {last}") from None
        assert last["threads"] <= baseline["threads_outside_pools"] + baseline["pool_threads_max"], last
    wait_for(lambda: _app_resources() == ([], []), 10, "no bridges or channels left in the app")
    assert "0 active channels" in cli("core show channels count")
    assert "'call failed" not in bot.log()  # a hang-up during the set-up is not a failure


def test_asterisk_restart_mid_call_ends_the_call_in_the_bot(bot):
    """Asterisk restarts under a live call: on reconnect the bot reconciles, finds the channel
    gone and ends its side of the call (no ghost call holding a slot of max_calls)."""
    from tests.integration.telephony import bot_registered, pbx

    set_clock(CLOSED_TIME)
    before = _calls_started(bot)
    t = threading.Thread(target=lambda: asyncio.run(place_call(CallScript(MAIN, max_seconds=8), "softphone",
                                                                 sip_password())))
    t.start()
    wait_for(lambda: _calls_started(bot) > before, 10, "the bot to take the call")
    assert bot.health()["calls"] == 1
    pbx("restart")
    wait_for(bot_registered, 20, "the bot to reconnect to the restarted Asterisk")
    wait_for(lambda: bot.health().get("calls") == 0, 10, "the bot to end the call Asterisk lost")
    t.join(20)
