"""A report month: parsed from ``YYYY-MM`` and bounded in the municipality's local time.

The store keeps UTC timestamps (``store.base.timestamp``); a month runs from local midnight on
its first day to local midnight on the next month's first day, so its UTC bounds move with
daylight saving time (e.g. March 2026 is 2026-02-28T23:00Z .. 2026-03-31T22:00Z).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from zoneinfo import ZoneInfo

from voicebot.errors import VoicebotError
from voicebot.store.base import timestamp

TIMEZONE = "Europe/Copenhagen"
LOCAL = ZoneInfo(TIMEZONE)

_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclasses.dataclass(frozen=True)
class Month:
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> dt.datetime:
        """Local midnight on the first day (aware, Europe/Copenhagen)."""
        return dt.datetime(self.year, self.month, 1, tzinfo=LOCAL)

    @property
    def end(self) -> dt.datetime:
        """Local midnight on the next month's first day (exclusive)."""
        return self.next().start

    def utc_bounds(self) -> tuple[str, str]:
        """``[start, end)`` as store timestamps: compare ``started_at`` against them as text."""
        return timestamp(self.start), timestamp(self.end)

    def previous(self) -> Month:
        return Month(self.year - 1, 12) if self.month == 1 else Month(self.year, self.month - 1)

    def next(self) -> Month:
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)


def parse_month(text: str) -> Month:
    """``2026-02`` -> Month(2026, 2); anything else is the user's error."""
    m = _MONTH.fullmatch((text or "").strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise VoicebotError(f"--month: expected YYYY-MM (e.g. 2026-02), got {text!r}")
    return Month(int(m.group(1)), int(m.group(2)))


def local_time(stamp: str) -> dt.datetime:
    """A store timestamp (UTC, ``...Z``) in local time."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(LOCAL)
