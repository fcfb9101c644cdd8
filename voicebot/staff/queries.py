"""What the staff pages read from the record store: one tenant's numbers and turns, never more.

The dashboard reuses the monthly report's SQL (``report.kpis``) with a day or month scope; the
review list is its own small query. The store is opened read-only per request: a SQLite file's
path, or a ``store.readonly.PgSource`` for PostgreSQL (the same SQL runs on both).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from voicebot.report.kpis import Scope, kpi_block, transfers_by_department, volume
from voicebot.report.period import LOCAL, Month
from voicebot.store import readonly as store_readonly
from voicebot.store.base import StoreError, timestamp
from voicebot.store.readonly import PgSource, Reader

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Day:
    """A local calendar day; quacks like ``report.period.Month`` for ``Scope``."""

    date: dt.date

    def utc_bounds(self) -> tuple[str, str]:
        start = dt.datetime(self.date.year, self.date.month, self.date.day, tzinfo=LOCAL)
        end = dt.datetime.combine(self.date + dt.timedelta(days=1), dt.time(), tzinfo=LOCAL)
        return timestamp(start), timestamp(end)


def open_readonly(source: Path | PgSource) -> Reader | None:
    """The record store read-only (a SQLite file, or PostgreSQL: ``store.readonly.read_source``),
    or None when nothing has been recorded yet or it cannot be read (logged)."""
    if isinstance(source, Path) and not source.is_file():
        return None
    try:
        return store_readonly.open_readonly(source)
    except StoreError as exc:
        log.warning("record store not readable for the staff pages", extra={"error": str(exc)})
        return None


def _busiest_hours(grid: dict[str, Any], top: int = 3) -> list[tuple[int, int]]:
    """(local hour, conversations) of the ``top`` busiest hours over the whole period."""
    per_hour = [sum(row[h] for row in grid["total"]) for h in range(24)]
    ranked = sorted((h for h in range(24) if per_hour[h]), key=lambda h: (-per_hour[h], h))
    return [(h, per_hour[h]) for h in ranked[:top]]


def dashboard(path: Path | PgSource, tenant: str, now: dt.datetime, departments: dict[str, str],
              human_target: str) -> dict[str, Any]:
    """Today and this month (local time) for ``tenant``: KPIs per channel, transfers per
    department, busiest hours. Test calls are left out, as in the monthly report."""
    local = now.astimezone(LOCAL)
    periods = {"today": Day(local.date()), "month": Month(local.year, local.month)}
    db = open_readonly(path)
    out: dict[str, Any] = {}
    try:
        for name, period in periods.items():
            if db is None:
                out[name] = None
                continue
            scope = Scope(period, tenant, include_tests=False)  # type: ignore[arg-type]  # Day quacks
            out[name] = {"kpis": kpi_block(db, scope, human_target),
                         "transfers": transfers_by_department(db, scope, departments),
                         "busiest": _busiest_hours(volume(db, scope))}
    finally:
        if db is not None:
            db.close()
    out["month_name"] = str(periods["month"])
    out["day_name"] = local.date().isoformat()
    return out


@dataclasses.dataclass(frozen=True)
class ReviewTurn:
    conversation_id: str
    index: int
    at: str
    channel: str
    outcome: str | None
    heard: str
    intent: str | None
    confidence: float | None
    decision: str


def review_turns(path: Path | PgSource, tenant: str, low_confidence: float, limit: int = 50) -> list[ReviewTurn]:
    """Turns of ``tenant``'s conversations that did not end resolved where the bot did not
    understand (intent none, or null with a rephrase/menu) or was unsure (confidence below ``low_confidence``), newest
    first. Events ("(stilhed)") and key presses ("[5]") are left out; test calls too."""
    db = open_readonly(path)
    if db is None:
        return []
    try:
        rows = db.execute(
            "SELECT t.conversation_id, t.idx, t.at, c.channel, c.outcome, t.heard, t.intent, t.confidence, "
            "t.decision FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "WHERE c.tenant = ? AND c.ref IS NULL AND (c.outcome IS NULL OR c.outcome <> 'resolved') "
            # not understood (as the report's top_unrecognized), or matched but unsure; a null
            # intent on other turns is no miss ("medarbejder", a survey answer, the greeting)
            "AND (t.intent = 'none' OR (t.intent IS NULL AND t.decision IN ('rephrase', 'menu')) "
            "OR t.confidence < ?) AND t.decision NOT IN ('start', 'survey') "
            "AND t.heard NOT LIKE '(%)' AND t.heard NOT GLOB '[[]?]' AND trim(t.heard) <> '' "
            "ORDER BY t.at DESC, t.idx DESC LIMIT ?", (tenant, low_confidence, max(0, limit))).fetchall()
    finally:
        db.close()
    return [ReviewTurn(*r) for r in rows]


def find_turn(path: Path | PgSource, tenant: str, conversation_id: str, index: int) -> str | None:
    """The stored (redacted) text of one turn, only if it is ``tenant``'s."""
    db = open_readonly(path)
    if db is None:
        return None
    try:
        row = db.execute("SELECT t.heard FROM turns t JOIN conversations c ON c.id = t.conversation_id "
                         "WHERE c.tenant = ? AND t.conversation_id = ? AND t.idx = ?",
                         (tenant, conversation_id, index)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


__all__ = ["Day", "ReviewTurn", "dashboard", "find_turn", "review_turns"]
