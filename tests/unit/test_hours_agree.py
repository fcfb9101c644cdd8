"""One truth for the human service's hours and queue: the dialplan's globals (which route the
calls) and the YAML the bot uses to *say* the hours must agree."""

from __future__ import annotations

import re

from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.knowledge.departments import HUMAN, load_directory
from voicebot.knowledge.hours import DAYS, parse_interval
from voicebot.telephony.ear import VoiceConfig

GLOBALS = PROJECT_ROOT / "dialplans" / "00-globals.conf"


def dialplan_globals() -> dict[str, str]:
    text = GLOBALS.read_text()
    return dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", text, re.MULTILINE))


def test_yaml_hours_match_the_dialplan_timetable():
    g = dialplan_globals()
    directory = load_directory(load_settings())
    schedule = directory.schedule(HUMAN)
    assert schedule is not None and schedule.timezone == g["HOURS_TZ"]
    for iso_day, day in enumerate(DAYS, start=1):
        span = g[f"HOURS_{iso_day}"].strip()
        yaml_spans = getattr(schedule, day)
        if not span:
            assert yaml_spans == [], day
            continue
        start, end = span.split("-")
        want = (int(start[:2]), int(start[2:]), int(end[:2]), int(end[2:]))
        assert len(yaml_spans) == 1, day
        a, b = parse_interval(yaml_spans[0])
        assert (a.hour, a.minute, b.hour, b.minute) == want, day


def test_the_bot_asks_ami_about_the_queue_the_dialplan_uses():
    assert dialplan_globals()["HUMAN_QUEUE"] == load_settings().section("voice", VoiceConfig).human_queue


def test_the_dialplan_messages_say_the_hours_the_timetable_has():
    """closed/all-busy are played by Asterisk (bot down, queue empty): the hours they say must be
    the ones the YAML (and so the dialplan globals, above) define, word for word as the bot says them."""
    hours = load_directory(load_settings()).schedule(HUMAN).describe()
    for name in ("closed", "all-busy"):
        text = (PROJECT_ROOT / "dialplans" / "sounds" / f"{name}.txt").read_text()
        assert hours in text, f"dialplans/sounds/{name}.txt does not say the opening hours '{hours}'"


def test_the_dialplan_dead_man_window_is_the_bots():
    """The dialplan arms the timer before Stasis, the bot pushes it forward: the same window."""
    assert float(dialplan_globals()["VOICEBOT_DEADMAN"]) == load_settings().section("voice", VoiceConfig).deadman_s
