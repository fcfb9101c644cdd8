"""Opening hours: weekly schedules in config, checked against local time.

Hours are data (DESIGN.md §8), so admins change them in YAML, not code. A schedule maps weekday
names to lists of ``"HH:MM-HH:MM"`` intervals; a missing day is closed. Public holidays come from
a country's calendar (the ``holidays`` package: Easter-based days move every year, so a list in
config would be wrong by next spring), plus the optional days the office also keeps closed
(``holidays_extra``, e.g. Juleaftensdag) and any other date in ``closed_dates``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DANISH_DAYS = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")


def parse_interval(text: str) -> tuple[dt.time, dt.time]:
    """``"08:00-14:00"`` or ``"8-14"`` -> (start, end); ValueError when malformed."""
    start, sep, end = text.replace(" ", "").partition("-")
    if not sep:
        raise ValueError(f"expected an interval like 08:00-14:00, got {text!r}")
    a, b = _parse_time(start), _parse_time(end)
    if b <= a:
        raise ValueError(f"interval ends before it starts: {text!r}")
    return a, b


def _parse_time(text: str) -> dt.time:
    hour, _, minute = text.partition(":")
    try:
        return dt.time(int(hour), int(minute or 0))
    except ValueError:
        raise ValueError(f"not a time of day: {text!r}") from None


@dataclasses.dataclass
class Schedule:
    """A weekly schedule; ``always: true`` means open around the clock (the bot itself)."""

    timezone: str = "Europe/Copenhagen"
    always: bool = False
    mon: list[str] = dataclasses.field(default_factory=list)
    tue: list[str] = dataclasses.field(default_factory=list)
    wed: list[str] = dataclasses.field(default_factory=list)
    thu: list[str] = dataclasses.field(default_factory=list)
    fri: list[str] = dataclasses.field(default_factory=list)
    sat: list[str] = dataclasses.field(default_factory=list)
    sun: list[str] = dataclasses.field(default_factory=list)
    holidays: str = "DK"          # the country whose public holidays are closed ("" = none)
    holidays_extra: list[str] = dataclasses.field(default_factory=list)  # optional days also closed
    closed_dates: list[str] = dataclasses.field(default_factory=list)  # other closed days, ISO dates

    def validate(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        if self.holidays:
            import holidays

            if self.holidays not in holidays.list_supported_countries():
                raise ValueError(f"holidays: not a country code with a holiday calendar: {self.holidays!r} "
                                 "(ISO 3166 alpha-2, e.g. DK)")
            known = optional_holidays(self.holidays)
            for name in self.holidays_extra:
                if name not in known:
                    raise ValueError(f"holidays_extra: {name!r} is not an optional holiday of {self.holidays} "
                                     f"(known: {', '.join(sorted(known))})")
        elif self.holidays_extra:
            raise ValueError("holidays_extra: needs a holidays: country")
        for day in DAYS:
            for text in getattr(self, day):
                try:
                    parse_interval(text)
                except ValueError as exc:
                    raise ValueError(f"{day}: {exc}") from None
        for text in self.closed_dates:
            try:
                dt.date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"closed_dates: not an ISO date (YYYY-MM-DD): {text!r}") from None

    def is_open(self, when: dt.datetime) -> bool:
        """Whether ``when`` (aware; naive means UTC) falls inside the schedule."""
        if self.always:
            return True
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        local = when.astimezone(ZoneInfo(self.timezone))
        if self.closed_reason(local.date()):
            return False
        now = local.time()
        return any(a <= now < b for a, b in map(parse_interval, getattr(self, DAYS[local.weekday()])))

    def next_opening(self, when: dt.datetime, horizon_days: int = 14) -> dt.datetime | None:
        """The next moment at or after ``when`` the schedule opens (local time), None if never."""
        if self.always:
            return when
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        local = when.astimezone(ZoneInfo(self.timezone))
        for offset in range(horizon_days + 1):
            day = local.date() + dt.timedelta(days=offset)
            if self.closed_reason(day):
                continue
            for start, _ in sorted(map(parse_interval, getattr(self, DAYS[day.weekday()]))):
                opens = dt.datetime.combine(day, start, tzinfo=local.tzinfo)
                if opens >= local:
                    return opens
        return None

    def closed_reason(self, day: dt.date) -> str:
        """Why ``day`` is closed all day ('Anden påskedag', 'closed_dates'), or '' when it is not."""
        if self.always:
            return ""
        if day.isoformat() in self.closed_dates:
            return "closed_dates"
        if self.holidays:
            return holiday_calendar(self.holidays, tuple(self.holidays_extra), day.year).get(day, "")
        return ""

    def closed_days(self, start: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
        """Every holiday or closed date from ``start`` up to and including ``end``, with its reason."""
        days = (start + dt.timedelta(days=n) for n in range((end - start).days + 1))
        return [(d, reason) for d in days if (reason := self.closed_reason(d))]

    def say_next_opening(self, when: dt.datetime) -> str:
        """'i dag klokken 11', 'i morgen klokken 8', 'på mandag klokken 11' (Danish, for the greeting)."""
        opens = self.next_opening(when)
        if opens is None:
            return "senere"
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        days = (opens.date() - when.astimezone(opens.tzinfo).date()).days
        day = {0: "i dag", 1: "i morgen"}.get(days, f"på {DANISH_DAYS[opens.weekday()]}")
        return f"{day} klokken {_say_time(opens.time())}"

    def describe(self) -> str:
        """The schedule in Danish, grouping days with equal hours: 'mandag 11-17, tirsdag-fredag 8-14'."""
        if self.always:
            return "hele døgnet"
        groups: list[tuple[int, int, str]] = []
        for i, day in enumerate(DAYS):
            text = " og ".join(_say_interval(t) for t in getattr(self, day))
            if not text:
                continue
            if groups and groups[-1][1] == i - 1 and groups[-1][2] == text:
                groups[-1] = (groups[-1][0], i, text)
            else:
                groups.append((i, i, text))
        if not groups:
            return "lukket"
        parts = [(DANISH_DAYS[a] if a == b else f"{DANISH_DAYS[a]} til {DANISH_DAYS[b]}") + f" {t}"
                 for a, b, t in groups]
        return ", ".join(parts[:-1]) + (" og " if len(parts) > 1 else "") + parts[-1]


def _say_interval(text: str) -> str:
    a, b = parse_interval(text)
    return f"{_say_time(a)} til {_say_time(b)}"


def _say_time(t: dt.time) -> str:
    return f"{t.hour}" if not t.minute else f"{t.hour}.{t.minute:02d}"


@functools.lru_cache(maxsize=64)
def holiday_calendar(country: str, extra: tuple[str, ...], year: int) -> dict[dt.date, str]:
    """{date: Danish name} of ``country``'s public holidays in ``year``, plus the optional ones named
    in ``extra``. Cached: the greeting asks on every call."""
    import holidays

    public = holidays.country_holidays(country, years=year, language="da")
    days = {d: name for d, name in public.items()}
    if extra:
        optional = holidays.country_holidays(country, years=year, categories=("optional",), language="da")
        days.update({d: name for d, name in optional.items() if name in extra and d not in days})
    return days


@functools.lru_cache(maxsize=16)
def optional_holidays(country: str) -> frozenset[str]:
    """The names ``holidays_extra`` accepts for ``country`` (its optional days, in Danish)."""
    import holidays

    year = dt.date.today().year
    try:
        optional = holidays.country_holidays(country, years=(year, year + 1), categories=("optional",),
                                             language="da")
    except NotImplementedError:  # the country has no optional category
        return frozenset()
    return frozenset(optional.values())
