"""The report's numbers: SQL counts over the record store, returned as one plain dict (the JSON).

Everything here reads; nothing writes. Counts are done by the database (``GROUP BY channel``); only
the weekday x hour grid converts timestamps in Python, because local time needs the time zone rules.
The SQL is SQLite's; on PostgreSQL ``store.readonly.PgReader`` translates what little differs
(placeholders, ``json_each``, ``GLOB``), so keep anything else portable. See ``definitions`` for
what each number means.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from voicebot.report.definitions import CHANNELS, HUMAN_TARGET, KPIS, SCOPES, SECTIONS
from voicebot.report.period import TIMEZONE, Month, local_time
from voicebot.store.base import timestamp, utc_now
from voicebot.store.readonly import Reader

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TRANSFERRED = "transferred:"
_T = len(TRANSFERRED)
# the bot's first reaction to the citizen: the lowest-numbered turn after the greeting
_FIRST_DECISION = ("(SELECT t.decision FROM turns t WHERE t.conversation_id = c.id AND t.decision <> 'start' "
                   "ORDER BY t.idx LIMIT 1)")
_IS_TRANSFER = f"substr(c.outcome, 1, {_T}) = '{TRANSFERRED}'"


def _count(condition: str) -> str:
    """Rows meeting ``condition``, in SQL both SQLite (3.30+) and PostgreSQL run."""
    return f"COUNT(*) FILTER (WHERE {condition})"


class Scope:
    """The WHERE clause choosing a month's conversations (alias ``c``) and its parameters."""

    def __init__(self, month: Month, tenant: str | None, include_tests: bool) -> None:
        start, end = month.utc_bounds()
        clauses, params = ["c.started_at >= ?", "c.started_at < ?"], [start, end]
        if tenant is not None:
            clauses.append("c.tenant = ?")
            params.append(tenant)
        if not include_tests:
            clauses.append("c.ref IS NULL")
        self.where = " AND ".join(clauses)
        self.params: tuple = tuple(params)


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def kpi_block(db: Reader, scope: Scope, human_target: str = HUMAN_TARGET) -> dict[str, dict]:
    """``{scope: {kpi key: value}}`` for voice, chat and total."""
    rows = db.execute(
        f"""SELECT c.channel,
                   COUNT(*),
                   {_count("c.outcome IS NOT NULL")},
                   {_count("c.outcome = 'resolved'")},
                   {_count(f"c.outcome = 'resolved' AND {_FIRST_DECISION} = 'answer'")},
                   {_count(_IS_TRANSFER)},
                   {_count("c.outcome = ?")},
                   {_count(f"{_IS_TRANSFER} AND c.outcome <> ?")},
                   {_count(f"{_IS_TRANSFER} OR (c.channel = 'voice' AND c.outcome = 'failed')")},
                   {_count("c.outcome = 'abandoned'")},
                   {_count("c.outcome = 'failed'")},
                   {_count("c.survey IS NOT NULL")},
                   COALESCE(SUM(c.survey), 0)
            FROM conversations c WHERE {scope.where} GROUP BY c.channel""",
        (TRANSFERRED + human_target, TRANSFERRED + human_target, *scope.params)).fetchall()
    names = ("conversations", "ended", "resolved", "immediate", "transferred", "transferred_human",
             "transferred_department", "reached_staff", "abandoned", "failed", "survey_responses", "survey_sum")
    counts = {s: dict.fromkeys(names, 0) for s in SCOPES}
    for channel, *values in rows:
        for scope_name in (channel, "total"):
            bucket = counts.setdefault(scope_name, dict.fromkeys(names, 0))
            for name, value in zip(names, values):
                bucket[name] += int(value)
    out: dict[str, dict] = {}
    for scope_name, c in counts.items():
        c["unresolved"] = c["ended"] - c["resolved"] - c["transferred"] - c["abandoned"] - c["failed"]
        c["automation_rate"] = _rate(c["resolved"], c["ended"])
        c["immediate_rate"] = _rate(c["immediate"], c["ended"])
        c["transfer_rate"] = _rate(c["transferred"], c["ended"])
        c["reached_staff_rate"] = _rate(c["reached_staff"], c["ended"])
        c["survey_response_rate"] = _rate(c["survey_responses"], c["resolved"])
        c["survey_mean"] = _rate(c.pop("survey_sum"), c["survey_responses"])
        out[scope_name] = {k.key: c[k.key] for k in KPIS}
    return out


def change(current: dict[str, dict], previous: dict[str, dict]) -> dict[str, dict]:
    """This month minus the previous month, per scope and KPI (null when either is null)."""
    return {s: {k: (None if current[s][k] is None or previous[s][k] is None
                    else round(current[s][k] - previous[s][k], 4))
                for k in current[s]}
            for s in current}


def _by_channel(rows, key_name: str, departments: Mapping[str, str] | None = None) -> list[dict]:
    """``(key, channel, n)`` rows -> ``[{key_name: key, voice, chat, total}]``, largest first."""
    table: dict[str, dict] = {}
    for key, channel, n in rows:
        entry = table.setdefault(key, {key_name: key, **dict.fromkeys(SCOPES, 0)})
        entry[channel] = entry.get(channel, 0) + n
        entry["total"] += n
    out = sorted(table.values(), key=lambda e: (-e["total"], e[key_name]))
    if departments is not None:
        for entry in out:
            entry["department"] = departments.get(entry[key_name])
    return out


def transfers_by_department(db: Reader, scope: Scope,
                            departments: Mapping[str, str] | None = None) -> list[dict]:
    rows = db.execute(f"SELECT substr(c.outcome, {_T + 1}), c.channel, COUNT(*) FROM conversations c "
                      f"WHERE {scope.where} AND {_IS_TRANSFER} GROUP BY 1, 2", scope.params).fetchall()
    return _by_channel(rows, "target", departments or {})


def top_intents(db: Reader, scope: Scope, top: int) -> list[dict]:
    rows = db.execute(f"SELECT j.value, c.channel, COUNT(DISTINCT c.id) FROM conversations c, "
                      f"json_each(c.intents) j WHERE {scope.where} AND j.value IS NOT NULL GROUP BY 1, 2",
                      scope.params).fetchall()
    return _by_channel(rows, "intent")[:top]


def top_unrecognized(db: Reader, scope: Scope, top: int) -> list[dict]:
    """The stored (redacted) texts of turns not understood; nothing else about them is read."""
    rows = db.execute(f"SELECT t.heard, c.channel, COUNT(*) FROM turns t JOIN conversations c "
                      f"ON c.id = t.conversation_id WHERE {scope.where} "
                      "AND (t.intent IS NULL OR t.intent = 'none') AND t.decision IN ('rephrase', 'menu') "
                      # not an event: "(stilhed)", "(lagt på)"..., nor a key press "[5]" (store.recorder.heard)
                      "AND t.heard NOT LIKE '(%)' AND t.heard NOT GLOB '[[]?]' AND trim(t.heard) <> '' "
                      "GROUP BY 1, 2",
                      scope.params).fetchall()
    return _by_channel(rows, "text")[:top]


def volume(db: Reader, scope: Scope) -> dict[str, Any]:
    """Conversations by local weekday (rows, Monday first) and hour (columns 0-23)."""
    grids = {s: [[0] * 24 for _ in WEEKDAYS] for s in SCOPES}
    for channel, started in db.execute(f"SELECT c.channel, c.started_at FROM conversations c "
                                       f"WHERE {scope.where}", scope.params):
        when = local_time(started)
        for s in (channel, "total"):
            grids.setdefault(s, [[0] * 24 for _ in WEEKDAYS])[when.weekday()][when.hour] += 1
    return {"weekdays": list(WEEKDAYS), "hours": list(range(24)), **grids}


def calls_by_day(db: Reader, scope: Scope, month: Month) -> dict[str, Any]:
    """Phone calls per local day of the month (every day, zeros too) and their total: calls,
    transfers, and transferred calls an agent answered (``staff_reached_at``, from AMI)."""
    names = ("calls", "transferred", "answered_by_staff")
    days: dict[str, dict[str, Any]] = {}
    day = month.start.date()
    while day < month.end.date():
        days[day.isoformat()] = {"date": day.isoformat(), **dict.fromkeys(names, 0)}
        day += dt.timedelta(days=1)
    total = dict.fromkeys(names, 0)
    for started, outcome, reached in db.execute(
            f"SELECT c.started_at, c.outcome, c.staff_reached_at FROM conversations c "
            f"WHERE {scope.where} AND c.channel = 'voice'", scope.params):
        row = days[local_time(started).date().isoformat()]
        counts = {"calls": 1, "transferred": int((outcome or "").startswith(TRANSFERRED)),
                  "answered_by_staff": int(reached is not None)}
        for name, n in counts.items():
            row[name] += n
            total[name] += n
    return {"days": list(days.values()), "total": total}


def survey_distribution(db: Reader, scope: Scope) -> dict[str, dict[str, int]]:
    out = {s: {str(n): 0 for n in range(1, 6)} for s in SCOPES}
    for channel, answer, n in db.execute(f"SELECT c.channel, c.survey, COUNT(*) FROM conversations c "
                                         f"WHERE {scope.where} AND c.survey IS NOT NULL GROUP BY 1, 2",
                                         scope.params):
        for s in (channel, "total"):
            out.setdefault(s, {str(k): 0 for k in range(1, 6)})[str(answer)] += n
    return out


def build_report(db: Reader, month: Month, *, tenant: str | None = None,
                 include_tests: bool = False, top: int = 10, departments: Mapping[str, str] | None = None,
                 human_target: str = HUMAN_TARGET) -> dict[str, Any]:
    """The whole report as a JSON-ready dict. ``departments`` maps a transfer target (as recorded
    after ``transferred:``) to the department's name, for the per-department table."""
    scope = Scope(month, tenant, include_tests)
    prev_month = month.previous()
    current = kpi_block(db, scope, human_target)
    previous = kpi_block(db, Scope(prev_month, tenant, include_tests), human_target)
    start, end = month.utc_bounds()
    return {
        "report": "voicebot monthly KPI report",
        "month": str(month),
        "tenant": tenant,
        "timezone": TIMEZONE,
        "period": {"start_local": month.start.isoformat(), "end_local": month.end.isoformat(),
                   "start_utc": start, "end_utc": end},
        "test_calls": "included" if include_tests else "excluded",
        "generated_at": timestamp(utc_now()),
        "channels": list(CHANNELS),
        "definitions": [k.as_dict() for k in KPIS],
        "section_definitions": dict(SECTIONS),
        "kpis": current,
        "previous": {"month": str(prev_month), "kpis": previous},
        "change": change(current, previous),
        "transfers_by_department": transfers_by_department(db, scope, departments),
        "top_intents": top_intents(db, scope, top),
        "top_unrecognized": top_unrecognized(db, scope, top),
        "volume": volume(db, scope),
        "calls_by_day": calls_by_day(db, scope, month),
        "survey": survey_distribution(db, scope),
    }

