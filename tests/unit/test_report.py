"""``voicebot report``: a record store filled with a known month (February 2026, all of it CET,
UTC+1) plus its neighbours; every number in the JSON is checked against SQL written here,
independently of the report's own queries."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import random
import re
import sqlite3

import pytest

from voicebot.cli import main
from voicebot.errors import VoicebotError
from voicebot.report import build_report, parse_month
from voicebot.report.render_html import render_html
from voicebot.store.base import Turn, timestamp
from voicebot.store.sqlite import SqliteStore

UTC = dt.timezone.utc
FEB = ("2026-01-31T23:00:00.000Z", "2026-02-28T23:00:00.000Z")  # local midnight to midnight, CET
JAN = ("2025-12-31T23:00:00.000Z", "2026-01-31T23:00:00.000Z")
HUMAN = "transferred:human-queue"
DEPARTMENT_NAMES = {"human-queue": "Borgerservice", "affald": "Affald og genbrug",
                    "pladsanvisning": "Pladsanvisningen", "tandpleje": "Børne- og Ungdomstandplejen"}
TOPICS = ["pas-mistet", "koerekort", "sygesikring", "flytning", "vuggestue", "affald-storskrald"]
GARBLE = ["øh hvad med det der", "bla bla papir", "min nabo larmer", "jeg vil have <b>svar</b> & mere",
          "=SUM(A1)", "+45 20 12 34 56 ring mig op"]
START = ("(start)", None, "start")


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def scenario(rng: random.Random, channel: str):
    """(turns, outcome, survey, intents) of one conversation, drawn from the shapes the bot makes."""
    topic = rng.choice(TOPICS)
    garble = rng.choice(GARBLE)
    survey = rng.choice([None, 1, 2, 3, 4, 5, 5, 4])
    kind = rng.randrange(12)
    if kind in (0, 1, 2):  # answered at once
        return [START, ("spørgsmål", topic, "answer"), ("fem", None, "survey")], "resolved", survey, [topic]
    if kind == 3:  # asked to rephrase first
        return [START, (garble, rng.choice([None, "none"]), "rephrase"), ("igen", topic, "answer")], \
            "resolved", survey, [topic]
    if kind == 4:  # silence, then the answer; or a clarification
        first = ("(stilhed)", None, "rephrase") if rng.random() < 0.5 else ("noget", topic, "clarify")
        return [START, first, ("den første", topic, "answer")], "resolved", survey, [topic, topic]
    if kind == 5:  # two topics, the second via the keypad menu (voice) or rephrase
        other = rng.choice(TOPICS)
        return [START, ("a", topic, "answer"), (garble, None, "menu" if channel == "voice" else "rephrase"),
                ("[1]", other, "answer")], "resolved", survey, [topic, other]
    if kind == 6:  # to a department
        target = rng.choice(["affald", "pladsanvisning", "tandpleje"])
        return [START, ("vuggestue", topic, "transfer")], f"transferred:{target}", None, [topic]
    if kind == 7:  # asked for a person
        return [START, ("medarbejder", None, "transfer")], HUMAN, None, []
    if kind == 8:  # not understood twice, then a person
        return [START, (garble, None, "rephrase"), (rng.choice(GARBLE), "none", "menu"), ("[0]", None, "transfer")], \
            HUMAN, None, []
    if kind == 9:
        return [START, (garble, None, "rephrase"), ("(lagt på)", None, "end")], "abandoned", None, []
    if kind == 10:
        return [START, ("spørgsmål", topic, "answer")], rng.choice(["failed", "unresolved"]), None, [topic]
    return [START], None, None, []  # still live


def add(store: SqliteStore, clock: Clock, start: dt.datetime, channel: str, turns, outcome, survey, intents,
        tenant: str = "kff", ref: str | None = None) -> str:
    clock.now = start
    cid = store.start_conversation(channel=channel, tenant=tenant, ref=ref)
    for i, (heard, intent, decision) in enumerate(turns):
        store.add_turn(cid, Turn(index=i, heard=heard, intent=intent, decision=decision,
                                 at=timestamp(start + dt.timedelta(seconds=10 * i))))
    if outcome is not None:
        clock.now = start + dt.timedelta(minutes=3)
        store.finish_conversation(cid, outcome, survey, intents)
    return cid


def fill(store, clock: Clock) -> None:
    """The known data set: the same on every backend (seeded)."""
    rng = random.Random(20260201)
    answers = random.Random(12)  # which transferred (or failed, fail-open) calls an agent answered
    first, last = dt.datetime(2026, 1, 10, tzinfo=UTC), dt.datetime(2026, 3, 10, tzinfo=UTC)
    span = int((last - first).total_seconds())
    for _ in range(400):
        start = first + dt.timedelta(seconds=rng.randrange(span), milliseconds=rng.randrange(1000))
        channel = rng.choice(["voice", "voice", "chat"])
        tenant = "kff" if rng.random() < 0.85 else "frb"
        ref = f"test-{rng.randrange(10**6)}" if rng.random() < 0.08 else None
        cid = add(store, clock, start, channel, *scenario(rng, channel), tenant=tenant, ref=ref)
        outcome = store.get(cid).outcome or ""
        if channel == "voice" and (outcome.startswith("transferred:") or outcome == "failed") \
                and answers.random() < 0.6:
            clock.now = start + dt.timedelta(minutes=4)
            store.mark_reached_staff(cid, "borgerservice")
    # the month's edges in local time
    edges = [dt.datetime(2026, 1, 31, 22, 59, 59, 999000, tzinfo=UTC),  # Jan 31 23:59:59.999 CET: January
             dt.datetime(2026, 1, 31, 23, 0, tzinfo=UTC),                 # Feb 1 00:00 CET: February
             dt.datetime(2026, 2, 28, 22, 59, 59, 999000, tzinfo=UTC),  # Feb 28 23:59:59.999: February
             dt.datetime(2026, 2, 28, 23, 0, tzinfo=UTC)]                 # Mar 1 00:00: March
    for when in edges:
        for channel in ("voice", "chat"):
            add(store, clock, when, channel, [START, ("spørgsmål", "pas-mistet", "answer")], "resolved", 5,
                ["pas-mistet"])


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "voicebot.db"
    clock = Clock()
    store = SqliteStore(path, now=clock)
    fill(store, clock)
    store.close()
    return path


@pytest.fixture(scope="module")
def pg_source(pg_cluster):
    """The same data set in PostgreSQL (a schema of the session's throw-away cluster)."""
    from voicebot.store.postgres import PostgresStore
    from voicebot.store.readonly import PgSource

    source = PgSource(pg_cluster.dsn(pg_cluster.new_schema()), pg_cluster.password)
    clock = Clock()
    store = PostgresStore(source.dsn, password=source.password, now=clock)
    fill(store, clock)
    store.close()
    return source


@pytest.fixture(scope="module")
def db(db_path):
    conn = sqlite3.connect(db_path)
    yield conn
    conn.close()


@pytest.fixture
def site(tmp_path, db_path):
    path = tmp_path / "site.yaml"
    path.write_text(f"store:\n  path: {db_path}\n", encoding="utf-8")
    return path


# -- the independent expectations -------------------------------------------------------------------

KPI_CONDITIONS = {
    "conversations": "1",
    "ended": "outcome IS NOT NULL",
    "resolved": "outcome = 'resolved'",
    # an answer turn with nothing but the greeting before it
    "immediate": "outcome = 'resolved' AND id IN (SELECT a.conversation_id FROM turns a WHERE a.decision = 'answer' "
                 "AND NOT EXISTS (SELECT 1 FROM turns b WHERE b.conversation_id = a.conversation_id "
                 "AND b.idx < a.idx AND b.decision != 'start'))",
    "transferred": "outcome LIKE 'transferred:%'",
    "transferred_human": f"outcome = '{HUMAN}'",
    "transferred_department": f"outcome LIKE 'transferred:%' AND outcome != '{HUMAN}'",
    "reached_staff": "(outcome LIKE 'transferred:%' OR (channel = 'voice' AND outcome = 'failed'))",
    "abandoned": "outcome = 'abandoned'",
    "failed": "outcome = 'failed'",
    "unresolved": "outcome NOT IN ('resolved', 'abandoned', 'failed') AND outcome NOT LIKE 'transferred:%'",
    "survey_responses": "survey BETWEEN 1 AND 5",
}


def scope_sql(bounds, tenant, tests, channel=None, alias="") -> tuple[str, list]:
    a = alias + "." if alias else ""
    sql, params = f"{a}started_at >= ? AND {a}started_at < ?", list(bounds)
    if tenant:
        sql += f" AND {a}tenant = ?"
        params.append(tenant)
    if not tests:
        sql += f" AND {a}ref IS NULL"
    if channel in ("voice", "chat"):
        sql += f" AND {a}channel = ?"
        params.append(channel)
    return sql, params


def ratio(a, b):
    return round(a / b, 4) if b else None


def expected_kpis(db, bounds, tenant, tests) -> dict:
    out = {}
    for channel in ("voice", "chat", "total"):
        where, params = scope_sql(bounds, tenant, tests, channel)
        e = {key: db.execute(f"SELECT COUNT(*) FROM conversations WHERE {where} AND {cond}", params).fetchone()[0]
             for key, cond in KPI_CONDITIONS.items()}
        mean = db.execute(f"SELECT AVG(survey) FROM conversations WHERE {where}", params).fetchone()[0]
        e["automation_rate"] = ratio(e["resolved"], e["ended"])
        e["immediate_rate"] = ratio(e["immediate"], e["ended"])
        e["transfer_rate"] = ratio(e["transferred"], e["ended"])
        e["reached_staff_rate"] = ratio(e["reached_staff"], e["ended"])
        e["survey_response_rate"] = ratio(e["survey_responses"], e["resolved"])
        e["survey_mean"] = None if mean is None else round(mean, 4)
        out[channel] = e
    return out


def per_channel(db, sql_for_channel) -> dict:
    """{key: {voice, chat, total}} from a query ``(key, n)`` run once per channel."""
    table: dict = {}
    for channel in ("voice", "chat", "total"):
        sql, params = sql_for_channel(channel)
        for key, n in db.execute(sql, params):
            table.setdefault(key, {"voice": 0, "chat": 0, "total": 0})[channel] = n
    return table


def ranked(table: dict, name: str) -> list[dict]:
    rows = [{name: k, **v} for k, v in table.items()]
    return sorted(rows, key=lambda r: (-r["total"], r[name]))


def run_json(site, tmp_path, *extra) -> dict:
    out = tmp_path / "report.json"
    assert main(["--config", str(site), "report", "--month", "2026-02", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


# -- the numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant,tests", [(None, False), ("kff", False), (None, True)])
def test_every_number_equals_an_independent_sql_count(db, site, tmp_path, tenant, tests):
    extra = (["--tenant", tenant] if tenant else []) + (["--include-test-calls"] if tests else [])
    report = run_json(site, tmp_path, "--top", "100", *extra)

    assert report["month"] == "2026-02" and report["timezone"] == "Europe/Copenhagen"
    assert (report["period"]["start_utc"], report["period"]["end_utc"]) == FEB
    assert report["tenant"] == tenant and report["test_calls"] == ("included" if tests else "excluded")

    current, previous = expected_kpis(db, FEB, tenant, tests), expected_kpis(db, JAN, tenant, tests)
    assert report["kpis"] == current
    assert report["previous"] == {"month": "2026-01", "kpis": previous}
    assert report["change"] == {s: {k: None if current[s][k] is None or previous[s][k] is None
                                    else round(current[s][k] - previous[s][k], 4) for k in current[s]}
                                for s in current}
    assert sorted(d["key"] for d in report["definitions"]) == sorted(current["total"])
    # the data set exercises every KPI
    for key in ("immediate", "transferred_human", "transferred_department", "abandoned", "failed", "unresolved",
                "survey_responses"):
        assert current["voice"][key] > 0 and current["chat"][key] > 0, key
    assert current["total"]["reached_staff"] > current["total"]["transferred"]  # failed phone calls
    assert current["total"]["conversations"] > current["total"]["ended"]  # some still live
    assert current["total"]["resolved"] > current["total"]["immediate"] > 0

    def transfers(channel):
        where, params = scope_sql(FEB, tenant, tests, channel)
        return (f"SELECT substr(outcome, 13), COUNT(*) FROM conversations WHERE {where} "
                "AND outcome LIKE 'transferred:%' GROUP BY outcome", params)

    want = ranked(per_channel(db, transfers), "target")
    for row in want:
        row["department"] = DEPARTMENT_NAMES[row["target"]]
    assert report["transfers_by_department"] == want
    assert sum(r["total"] for r in want) == current["total"]["transferred"]

    intents = [r[0] for r in db.execute("SELECT DISTINCT j.value FROM conversations, json_each(intents) j")]
    table: dict = {}
    for intent in intents:
        for channel in ("voice", "chat", "total"):
            where, params = scope_sql(FEB, tenant, tests, channel)
            n = db.execute(f"SELECT COUNT(*) FROM conversations WHERE {where} AND EXISTS "
                           "(SELECT 1 FROM json_each(conversations.intents) WHERE value = ?)",
                           [*params, intent]).fetchone()[0]
            table.setdefault(intent, {})[channel] = n
    assert report["top_intents"] == ranked({k: v for k, v in table.items() if v["total"]}, "intent")

    def unrecognized(channel):
        where, params = scope_sql(FEB, tenant, tests, channel, alias="c")
        return (f"SELECT t.heard, COUNT(*) FROM turns t JOIN conversations c ON c.id = t.conversation_id "
                f"WHERE {where} AND COALESCE(t.intent, 'none') = 'none' AND t.decision IN ('rephrase', 'menu') "
                "AND NOT (substr(t.heard, 1, 1) = '(' AND substr(t.heard, -1) = ')') "
                "AND NOT (length(t.heard) = 3 AND substr(t.heard, 1, 1) = '[' AND substr(t.heard, 3) = ']') "
                "GROUP BY t.heard", params)

    want = ranked(per_channel(db, unrecognized), "text")
    assert report["top_unrecognized"] == want
    texts = {r["text"] for r in want}
    assert "(stilhed)" not in texts and "[NUMMER] ring mig op" in texts  # events out, redacted text only
    assert not any("20 12 34 56" in t for t in texts)

    volume = report["volume"]
    assert volume["weekdays"][0] == "Mon" and volume["hours"] == list(range(24))
    for channel in ("voice", "chat", "total"):
        where, params = scope_sql(FEB, tenant, tests, channel)
        grid = [[0] * 24 for _ in range(7)]
        for w, h, n in db.execute("SELECT CAST(strftime('%w', started_at, '+1 hours') AS INTEGER), "
                                  "CAST(strftime('%H', started_at, '+1 hours') AS INTEGER), COUNT(*) "
                                  f"FROM conversations WHERE {where} GROUP BY 1, 2", params):
            grid[(w + 6) % 7][h] = n  # %w: Sunday = 0
        assert volume[channel] == grid
        assert sum(map(sum, grid)) == current[channel]["conversations"]

        dist = {str(n): 0 for n in range(1, 6)}
        for answer, n in db.execute(f"SELECT survey, COUNT(*) FROM conversations WHERE {where} "
                                    "AND survey IS NOT NULL GROUP BY survey", params):
            dist[str(answer)] = n
        assert report["survey"][channel] == dist

    # phone calls per local day (February is CET throughout: UTC+1), zero days included
    where, params = scope_sql(FEB, tenant, tests, "voice")
    by_day = {row[0]: row[1:] for row in db.execute(
        "SELECT date(started_at, '+1 hours'), COUNT(*), COUNT(*) FILTER (WHERE outcome LIKE 'transferred:%'), "
        f"COUNT(staff_reached_at) FROM conversations WHERE {where} GROUP BY 1", params)}
    want = [{"date": f"2026-02-{d:02d}", **dict(zip(("calls", "transferred", "answered_by_staff"),
                                                    by_day.get(f"2026-02-{d:02d}", (0, 0, 0))))}
            for d in range(1, 29)]
    daily = report["calls_by_day"]
    assert daily["days"] == want
    assert daily["total"] == {k: sum(r[k] for r in want) for k in ("calls", "transferred", "answered_by_staff")}
    assert daily["total"]["calls"] == current["voice"]["conversations"]
    assert daily["total"]["transferred"] == current["voice"]["transferred"]
    assert 0 < daily["total"]["answered_by_staff"] < current["voice"]["reached_staff"]
    edges = [r for r in want if r["date"] in ("2026-02-01", "2026-02-28")]
    assert all(r["calls"] for r in edges)  # the local-midnight edge calls land on the first and last day


def test_month_edges_are_local_midnight(db, site, tmp_path):
    report = run_json(site, tmp_path)
    # Feb 1 00:00 CET is a Sunday; Feb 28 23:59 is a Saturday
    assert report["volume"]["total"][6][0] >= 2 and report["volume"]["total"][5][23] >= 2
    where, params = scope_sql(FEB, None, False)
    n = db.execute(f"SELECT COUNT(*) FROM conversations WHERE {where}", params).fetchone()[0]
    assert report["kpis"]["total"]["conversations"] == n
    assert db.execute("SELECT COUNT(*) FROM conversations WHERE started_at IN "
                      "('2026-01-31T23:00:00.000Z', '2026-02-28T22:59:59.999Z')").fetchone()[0] == 4


def test_top_limits_the_lists(site, tmp_path):
    full, top2 = run_json(site, tmp_path, "--top", "100"), run_json(site, tmp_path, "--top", "2")
    assert top2["top_intents"] == full["top_intents"][:2]
    assert top2["top_unrecognized"] == full["top_unrecognized"][:2]
    assert top2["kpis"] == full["kpis"]


def test_month_bounds_follow_daylight_saving_time():
    assert parse_month("2026-02").utc_bounds() == FEB
    assert parse_month("2026-03").utc_bounds() == ("2026-02-28T23:00:00.000Z", "2026-03-31T22:00:00.000Z")
    assert parse_month("2026-10").utc_bounds() == ("2026-09-30T22:00:00.000Z", "2026-10-31T23:00:00.000Z")
    assert str(parse_month("2026-01").previous()) == "2025-12"
    for bad in ("2026-13", "2026-00", "2026-2", "feb", "", "2026-02-01"):
        with pytest.raises(VoicebotError):
            parse_month(bad)


def test_volume_uses_local_hours_across_the_dst_change(tmp_path):
    clock = Clock()
    store = SqliteStore(tmp_path / "dst.db", now=clock)
    for when in (dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC),    # 01:30 CET, Sunday
                 dt.datetime(2026, 3, 29, 1, 30, tzinfo=UTC),    # 03:30 CEST, same Sunday
                 dt.datetime(2026, 3, 31, 21, 59, tzinfo=UTC),   # 23:59 CEST, Tuesday: March
                 dt.datetime(2026, 3, 31, 22, 0, tzinfo=UTC)):   # April 1 00:00 CEST
        add(store, clock, when, "chat", [START], "abandoned", None, [])
    store.close()
    conn = sqlite3.connect(tmp_path / "dst.db")
    report = build_report(conn, parse_month("2026-03"))
    conn.close()
    grid = report["volume"]["chat"]
    assert grid[6][1] == 1 and grid[6][3] == 1 and grid[1][23] == 1
    assert sum(map(sum, grid)) == report["kpis"]["chat"]["conversations"] == 3
    assert report["kpis"]["voice"]["conversations"] == 0 and report["kpis"]["voice"]["automation_rate"] is None


# -- the formats and the command ------------------------------------------------------------------------


def test_html_is_self_contained_with_inline_svg(site, tmp_path):
    out = tmp_path / "report.html"
    assert main(["--config", str(site), "report", "--month", "2026-02", "--format", "html", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") >= 5
    lowered = html.lower()
    assert "<script" not in lowered and "javascript:" not in lowered and " onload=" not in lowered
    assert "<link" not in lowered and "<img" not in lowered and "@import" not in lowered
    assert "Europe/Copenhagen" in html and "Straksafklaring" in html and "Tilfredshed" in html
    assert "immediate / ended." in html  # the definitions are printed
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # several inline SVGs, no shared element id
    refs = re.findall(r'href="#([^"]+)"', html) + re.findall(r"url\(#([^)]+)\)", html)
    assert refs and set(refs) <= set(ids)
    # citizen text is escaped, never markup
    assert "<b>svar</b>" not in html and "&lt;b&gt;svar&lt;/b&gt; &amp; mere" in html


def test_csv_has_one_row_per_number(site, tmp_path):
    report = run_json(site, tmp_path)
    out = tmp_path / "report.csv"
    assert main(["--config", str(site), "report", "--month", "2026-02", "--out", str(out)]) == 0  # from suffix
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    kpi = {(r["item"], r["channel"]): r for r in rows if r["section"] == "kpi"}
    assert len(kpi) == 3 * len(report["definitions"])
    assert kpi[("resolved", "voice")]["value"] == str(report["kpis"]["voice"]["resolved"])
    assert kpi[("automation_rate", "total")]["previous"] == str(report["previous"]["kpis"]["total"]["automation_rate"])
    volume = [r for r in rows if r["section"] == "volume" and r["channel"] == "total"]
    assert len(volume) == 7 * 24 and sum(int(r["value"]) for r in volume) == report["kpis"]["total"]["conversations"]
    daily = {(r["item"], r["label"]): r["value"] for r in rows if r["section"] == "calls_by_day"}
    assert len(daily) == 3 * (28 + 1)
    assert daily[("total", "answered_by_staff")] == str(report["calls_by_day"]["total"]["answered_by_staff"])
    items = {r["item"] for r in rows if r["section"] == "top_unrecognized"}
    assert "'=SUM(A1)" in items and "=SUM(A1)" not in items  # no formula for a spreadsheet


def test_json_to_stdout_by_default(site, capsys):
    assert main(["--config", str(site), "report", "--month", "2026-02", "--tenant", "nobody"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kpis"]["total"]["conversations"] == 0 and report["kpis"]["total"]["survey_mean"] is None
    assert report["top_intents"] == [] and report["transfers_by_department"] == []


def test_empty_month_still_renders_html(db):
    report = build_report(db, parse_month("2025-06"))
    html = render_html(report)
    assert "<svg" in html and "None this month." in html


@pytest.mark.parametrize("args,message", [
    (["--month", "2026-13"], "--month"),
    (["--month", "13-2026"], "--month"),
    (["--month", "2026-02", "--format", "pdf"], "--format"),
    (["--month", "2026-02", "--top", "0"], "--top"),
])
def test_bad_input_is_a_clear_error(site, capsys, args, message):
    assert main(["--config", str(site), "report", *args]) == 2
    err = capsys.readouterr().err
    assert "voicebot: error:" in err and message in err


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    site = tmp_path / "site.yaml"
    site.write_text(f"store:\n  path: {tmp_path}/none.db\n", encoding="utf-8")
    assert main(["--config", str(site), "report", "--month", "2026-02"]) == 2
    assert "no record store" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()  # a report never creates the store


def test_docs_define_every_kpi():
    from pathlib import Path

    from voicebot.report.definitions import KPIS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text(encoding="utf-8")
    for kpi in KPIS:
        assert f"| `{kpi.key}`" in docs and kpi.name_da in docs, kpi.key


# -- PostgreSQL: the same SQL through store.readonly's translation ------------------------------------


def _without_clock(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "generated_at"}


@pytest.mark.parametrize("month", ["2026-01", "2026-02", "2026-03"])
@pytest.mark.parametrize("tenant,tests", [(None, False), ("kff", False), (None, True)])
def test_postgresql_gives_the_same_report(db, pg_source, month, tenant, tests):
    from voicebot.store.readonly import open_readonly

    kw = {"tenant": tenant, "include_tests": tests, "top": 100, "departments": DEPARTMENT_NAMES}
    pg = open_readonly(pg_source)
    try:
        theirs = build_report(pg, parse_month(month), **kw)
    finally:
        pg.close()
    ours = build_report(db, parse_month(month), **kw)
    assert ours["kpis"]["total"]["conversations"] > 0 and ours["top_unrecognized"]
    assert _without_clock(theirs) == _without_clock(ours)


def test_staff_queries_give_the_same_answers_on_postgresql(db_path, pg_source):
    from voicebot.staff import queries
    from voicebot.staff.suggestions import unrecognized_texts

    def without_ids(turns):  # conversation ids are random per store
        return [dataclasses.replace(t, conversation_id="") for t in turns]

    now = dt.datetime(2026, 2, 14, 12, 0, tzinfo=UTC)
    since = dt.datetime(2026, 1, 1, tzinfo=UTC)
    for tenant in ("kff", "frb"):
        assert (queries.dashboard(pg_source, tenant, now, DEPARTMENT_NAMES, "human-queue")
                == queries.dashboard(db_path, tenant, now, DEPARTMENT_NAMES, "human-queue"))
        turns = queries.review_turns(pg_source, tenant, 0.6, limit=500)
        assert turns and without_ids(turns) == without_ids(queries.review_turns(db_path, tenant, 0.6, limit=500))
        assert queries.find_turn(pg_source, tenant, turns[0].conversation_id, turns[0].index) == turns[0].heard
        other = "frb" if tenant == "kff" else "kff"
        assert queries.find_turn(pg_source, other, turns[0].conversation_id, turns[0].index) is None
        assert unrecognized_texts(pg_source, tenant, since) == unrecognized_texts(db_path, tenant, since)


@pytest.mark.parametrize("pattern", ["[[]?]", "*.txt", "a?c", "[^a-c]*", "[]]x", "*[*]*", "it''s*", "100%*",
                                     "[a-cx]?", "(*)"])
def test_glob_means_the_same_on_postgresql(pg_source, pattern):
    from voicebot.store.readonly import open_readonly

    texts = ["[5]", "[55]", "[]", "x.txt", "xtxt", "abc", "aXc", "Abc", "d", "]x", "a*b", "it's me", "it s",
             "100%", "1000", "c!", "x", "(stilhed)", "(", "ø", "[ø]"]
    pg, lite = open_readonly(pg_source), sqlite3.connect(":memory:")
    try:
        for text in texts:
            sql = f"SELECT CAST(? AS TEXT) GLOB '{pattern}'"
            assert bool(pg.execute(sql, (text,)).fetchone()[0]) == bool(lite.execute(sql, (text,)).fetchone()[0]), \
                (pattern, text)
    finally:
        pg.close()
        lite.close()


def test_the_postgresql_reader_cannot_write(pg_source):
    from voicebot.store import StoreError
    from voicebot.store.readonly import open_readonly

    pg = open_readonly(pg_source)
    try:
        with pytest.raises(StoreError, match="read-only transaction"):
            pg.execute("DELETE FROM conversations WHERE ref = ?", ("x",))
    finally:
        pg.close()
