"""Real calls through the real Asterisk 22: the bot answers, fail-open, kill switch, reconnect.

Every test here places a SIP call with the project's own caller against the PBX that
`asterisk/pbx` installs; the hours logic is driven by the dialplan's overridable clock.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from datetime import time as dt_time

import numpy as np
import pytest

from tests.integration.telephony import CLOSED_TIME, CPH, OPEN_TIME, bot_registered, call, cli, greeting_audio, pbx, \
    set_clock, sip_password, wait_for
from voicebot.knowledge.hours import holiday_calendar
from voicebot.sip.caller import RATE, AgentPhone, CallScript
from voicebot.sip.measure import prompt_stop_ms
from voicebot.speech.audio import voiced_seconds

pytestmark = pytest.mark.integration

MAIN = "33663366"


@pytest.fixture(scope="module")
def greeting():
    """The closed-hours greeting as the bot plays it (8 kHz, from the same TTS cache)."""
    return greeting_audio(CLOSED_TIME)


def calls_started(bot) -> int:
    return bot.log().count("'call started'")


def test_bot_answers_the_main_number_and_plays_the_greeting(bot, greeting):
    set_clock(CLOSED_TIME)
    length = len(greeting) / RATE
    # stay on the line for the greeting only: the bot then waits for the caller to speak
    report = call(CallScript(MAIN, max_seconds=length + 0.8))
    assert report.answered
    assert report.bot_audio_seconds > 1
    expected = voiced_seconds(greeting, RATE)
    assert abs(report.bot_audio_seconds - expected) <= 0.2 * expected, (report.bot_audio_seconds, expected)
    # what the caller heard was the greeting, all of it
    stopped = prompt_stop_ms(report, greeting)
    assert stopped is None, (stopped, f"{report.lost_frames} frames lost on the way", bot.log()[-3000:])
    assert report.first_audio_ms is not None and report.first_audio_ms < 1500
    assert "'call started'" in bot.log()


def test_alias_1000_reaches_the_bot_too(bot):
    before = calls_started(bot)
    report = call(CallScript("1000", max_seconds=5))
    assert report.answered and report.bot_audio_seconds > 1
    assert calls_started(bot) == before + 1


def test_kill_switch_skips_the_bot(bot):
    set_clock(CLOSED_TIME)
    before = calls_started(bot)
    cli("database put voicebot enabled 0")
    try:
        report = call(CallScript(MAIN, max_seconds=40))
    finally:
        cli("database del voicebot enabled")
    assert report.answered and report.hangup_by == "bot"
    assert report.bot_audio_seconds > 5  # the closed-hours message, not the bot
    assert calls_started(bot) == before  # the bot never saw the call


def test_bot_stopped_closed_hours_plays_closed_message(bot):
    bot.stop()
    try:
        set_clock(CLOSED_TIME)
        report = call(CallScript(MAIN, max_seconds=40))
        assert report.answered and report.hangup_by == "bot"
        assert report.bot_audio_seconds > 5
    finally:
        bot.start()


def test_holiday_is_closed_even_in_opening_hours(bot):
    bot.stop()
    set_clock(OPEN_TIME)
    day = OPEN_TIME.strftime("%Y%m%d")
    cli(f"database put voicebot-holiday {day} test")
    try:
        agent = asyncio.run(_agent_call(CallScript(MAIN, max_seconds=30)))[0]
        assert agent.answered == []  # closed: nobody's phone rang
    finally:
        cli(f"database del voicebot-holiday {day}")
        bot.start()


def test_a_calendar_holiday_from_the_bots_config_is_closed_with_no_astdb_mark(bot):
    """HOLIDAYS (calendar.conf, rendered by asterisk/pbx from hours.borgerservice) closes Easter
    Monday, a Monday inside the 11-17 timetable, with no AstDB mark and no bot."""
    today = datetime.now(CPH).date()
    easter_monday = next(day for year in (today.year, today.year + 1)
                         for day, name in holiday_calendar("DK", (), year).items()
                         if name == "Anden påskedag" and day >= today)
    assert easter_monday.strftime("%Y%m%d") in cli("dialplan show globals")
    bot.stop()
    try:
        set_clock(datetime.combine(easter_monday, dt_time(12, 0), tzinfo=CPH))
        agent = asyncio.run(_agent_call(CallScript(MAIN, max_seconds=30)))[0]
        assert agent.answered == []  # closed: nobody's phone rang
        set_clock(datetime.combine(easter_monday + timedelta(days=1), dt_time(12, 0), tzinfo=CPH))
        agent = asyncio.run(_agent_call(CallScript(MAIN, max_seconds=12)))[0]
        assert agent.answered  # the Tuesday after is an ordinary open day: the agent rings
    finally:
        bot.start()


def test_doctor_warns_when_the_dialplans_calendar_lacks_a_holiday(bot):
    from voicebot.commands.doctor import check_calendar
    from voicebot.config import load_settings

    settings = load_settings()
    good = asyncio.run(check_calendar(settings))
    assert good.ok, good.detail
    holidays = re.search(r"HOLIDAYS=([0-9-]*)", cli("dialplan show globals")).group(1)
    first, rest = holidays.split("-", 1)
    cli(f"dialplan set global HOLIDAYS {rest}")  # as if calendar.conf were a day out of date
    try:
        stale = asyncio.run(check_calendar(settings))
        assert not stale.ok and stale.warning
        assert f"{first[:4]}-{first[4:6]}-{first[6:]}" in stale.detail and "asterisk/pbx sync" in stale.detail
    finally:
        cli(f"dialplan set global HOLIDAYS {holidays}")


async def _agent_call(script: CallScript):
    tone = (np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE) * 8000).astype(np.int16)
    agent = await AgentPhone("agent1", sip_password("agent1"), audio=tone).start()
    try:
        from voicebot.sip.caller import place_call

        report = await place_call(script, "softphone", sip_password())
        return agent, report
    finally:
        await agent.close()


def test_bot_stopped_open_hours_reaches_the_human_agent(bot):
    bot.stop()
    try:
        set_clock(OPEN_TIME)
        agent, report = asyncio.run(_agent_call(CallScript(MAIN, max_seconds=12)))
        assert report.answered
        assert len(agent.answered) == 1, "the agent in the borgerservice queue was not rung"
        assert report.hangup_by == "caller"  # talking to the agent until the caller hung up
        assert "borgerservice" in cli("queue show borgerservice")
    finally:
        bot.start()


def test_bot_transfer_target_human_reaches_agent_on_shutdown(bot):
    """SIGTERM during a call hands the caller back to the dialplan (human route), not dropped."""
    set_clock(OPEN_TIME)
    box = {}

    def run_call():
        box["result"] = asyncio.run(_agent_call(CallScript(MAIN, max_seconds=14)))

    t = threading.Thread(target=run_call)
    t.start()
    before = calls_started(bot)
    wait_for(lambda: calls_started(bot) > before, 10, "the bot to take the call")
    time.sleep(1.0)  # mid-greeting
    bot.stop(signal.SIGTERM)
    t.join(30)
    agent, report = box["result"]
    assert "'call handed back to the dialplan'" in bot.log()
    assert report.answered and len(agent.answered) == 1
    bot.start()


def _ready_status(bot) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/readyz", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_bot_reconnects_after_asterisk_restart(bot):
    assert _ready_status(bot) == 200
    pbx("stop")
    # a load balancer or the platform's monitoring must stop sending calls to this node
    wait_for(lambda: _ready_status(bot) == 503, 10, "/readyz to say not ready without Asterisk")
    pbx("start")
    wait_for(bot_registered, 20, "the bot to reconnect to the restarted Asterisk")
    assert _ready_status(bot) == 200
    set_clock(CLOSED_TIME)
    report = call(CallScript(MAIN, max_seconds=5))
    assert report.answered and report.bot_audio_seconds > 1
    assert len(re.findall("'ARI connected'", bot.log())) >= 2
    assert bot.proc is not None and bot.proc.poll() is None  # same process: no restart needed
