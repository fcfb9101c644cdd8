"""The holiday calendar: the days the human service is closed, for the bot (greeting, chat) and,
rendered by ``voicebot hours --asterisk``, for the dialplan's HOLIDAYS."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from voicebot.cli import main
from voicebot.config import load_settings
from voicebot.errors import ConfigError
from voicebot.knowledge.departments import HUMAN, load_directory
from voicebot.knowledge.hours import Schedule

CPH = dt.timezone(dt.timedelta(hours=1))  # winter time; all dates below are in CET
WEEK = dict(mon=["11-17"], tue=["8-14"], wed=["8-14"], thu=["8-14"], fri=["8-14"])


def test_easter_moves_and_is_closed_only_with_a_calendar():
    plain, dk = Schedule(holidays="", **WEEK), Schedule(holidays="DK", **WEEK)
    for easter_monday in (dt.date(2027, 3, 29), dt.date(2028, 4, 17)):  # computed, not listed
        noon = dt.datetime.combine(easter_monday, dt.time(12), tzinfo=CPH)
        assert plain.is_open(noon)
        assert not dk.is_open(noon)
        assert dk.closed_reason(easter_monday) == "Anden påskedag"
        assert dk.is_open(noon + dt.timedelta(days=1))  # the Tuesday after: an ordinary day


def test_optional_days_only_when_named_and_closed_dates_too():
    christmas_eve = dt.date(2026, 12, 24)  # a Thursday
    assert Schedule(**WEEK).closed_reason(christmas_eve) == ""  # not a public holiday in Denmark
    kk = Schedule(holidays_extra=["Juleaftensdag"], closed_dates=["2026-12-23"], **WEEK)
    assert kk.closed_reason(christmas_eve) == "Juleaftensdag"
    assert kk.closed_reason(dt.date(2026, 12, 23)) == "closed_dates"
    assert [d.isoformat() for d, _ in kk.closed_days(dt.date(2026, 12, 22), dt.date(2026, 12, 27))] == \
        ["2026-12-23", "2026-12-24", "2026-12-25", "2026-12-26"]


def test_the_next_opening_skips_the_easter_days():
    dk = Schedule(**WEEK)
    # Wednesday before Easter 2027, after closing: Skærtorsdag, Langfredag, the weekend and
    # Anden påskedag are closed, so the next opening is Tuesday 30 March at 8
    when = dt.datetime(2027, 3, 24, 15, tzinfo=CPH)
    assert dk.next_opening(when).replace(tzinfo=None) == dt.datetime(2027, 3, 30, 8)
    assert dk.say_next_opening(when) == "på tirsdag klokken 8"


def test_the_shipped_borgerservice_schedule_closes_the_danish_holidays():
    schedule = load_directory(load_settings()).schedule(HUMAN)
    closed = dict(schedule.closed_days(dt.date(2027, 1, 1), dt.date(2027, 12, 31)))
    assert closed[dt.date(2027, 5, 6)] == "Kristi himmelfartsdag"
    assert closed[dt.date(2027, 6, 5)] == "Grundlovsdag"
    assert closed[dt.date(2027, 12, 31)] == "Nytårsaften"
    assert dt.date(2027, 5, 1) not in closed  # Arbejdernes kampdag: open unless configured


@pytest.mark.parametrize("yaml, message", [
    ("holidays_extra: [Juleaften]", r"site.yaml:4: hours.borgerservice.holidays_extra: 'Juleaften' is not an "
                                    r"optional holiday of DK \(known: .*Juleaftensdag"),
    ("holidays: XX", r"site.yaml:4: hours.borgerservice.holidays: not a country code"),
])
def test_calendar_errors_name_file_line_and_key(tmp_path, yaml, message):
    site = tmp_path / "site.yaml"
    site.write_text(f"hours:\n  borgerservice:\n    mon: ['11-17']\n    {yaml}\n")
    with pytest.raises(ConfigError, match=message):
        load_directory(load_settings(site))


def test_hours_command_lists_the_days_and_renders_the_dialplan_calendar(capsys):
    assert main(["hours", "--from", "2027-03-20", "--days", "14", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["date"], c["reason"]) for c in listed["closed"]] == [
        ("2027-03-25", "Skærtorsdag"), ("2027-03-26", "Langfredag"), ("2027-03-28", "Påskedag"),
        ("2027-03-29", "Anden påskedag")]
    assert main(["hours", "--from", "2027-03-20", "--asterisk"]) == 0
    conf = capsys.readouterr().out
    assert "[globals](+)" in conf
    (days,) = re.findall(r"^HOLIDAYS=([0-9-]*)$", conf, re.MULTILINE)
    days = days.split("-")  # the dialplan's FIELDNUM(HOLIDAYS,-,YYYYMMDD) relies on this form
    assert "20270329" in days and "20281231" in days and "20270330" not in days
    assert all(re.fullmatch(r"\d{8}", d) for d in days)


def test_the_chat_says_the_holiday_and_the_next_opening():
    from voicebot.chat.api import chat_info

    easter_monday_noon = dt.datetime(2027, 3, 29, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # CEST
    info = chat_info(load_settings(), easter_monday_noon)
    assert info["open_now"] is False
    assert info["hours_today"] == "Lukket i dag (mandag, anden påskedag)."
    assert info["next_opening"] == "Vi åbner igen i morgen klokken 8."
