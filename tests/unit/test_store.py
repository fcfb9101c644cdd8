"""The record store (SQLite and PostgreSQL, every test on both) and the recorder, on real
database files in tmp dirs and a real throw-away PostgreSQL cluster (tests/pg.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from voicebot.config import load_settings
from voicebot.dialogue.engine import Conversation
from voicebot.dialogue.events import (Ask, ChatMessage, Digit, End, Hangup, OfferSms, Option, Say,
                                      SendSms, Silence, Transfer, Utterance)
from voicebot.errors import ConfigError
from voicebot.nlu.matcher import MatchResult
from voicebot.store import Recorder, StoreError, open_store, store_config, store_location
from voicebot.store import sqlite as sqlite_module
from voicebot.store.base import Turn, timestamp, utc_now
from voicebot.store.recorder import decision
from voicebot.store.sqlite import SqliteStore

SALT = b"test-salt" * 4
CALLER = "+45 20 12 34 56"


class Clock:
    """A settable clock, so purge can be tested without waiting 90 days."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


class SqliteBackend:
    name = "sqlite"
    module = sqlite_module

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "var" / "voicebot.db"

    def open(self, now=utc_now) -> SqliteStore:
        return SqliteStore(self.path, now=now)

    def raw_bytes(self) -> bytes:
        """Everything SQLite has on disk for this store: the file, its WAL and shared memory."""
        out = b""
        for suffix in ("", "-wal", "-shm"):
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                out += path.read_bytes()
        return out

    def force_version(self, version: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path)
        db.execute(f"PRAGMA user_version = {version}")
        db.close()


class PostgresBackend:
    """One fresh schema in the session's cluster; every ``open`` is a new pool, as a new process
    would have."""

    name = "postgresql"

    def __init__(self, database) -> None:
        from voicebot.store import postgres

        self.module = postgres
        self.db = database

    def open(self, now=utc_now, **kw):
        return self.module.PostgresStore(self.db.dsn(), password=self.db.password, now=now, **kw)

    def raw_bytes(self) -> bytes:
        """The schema's table and index files (the cluster's shared WAL is not included)."""
        return b"".join(p.read_bytes() for p in self.db.files())

    def force_version(self, version: int) -> None:
        self.open().close()
        self.db.admin(f"INSERT INTO schema_migrations (version) VALUES ({version})")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    return PostgresBackend(request.getfixturevalue("pg_schema"))


@pytest.fixture
def store(backend):
    s = backend.open()
    yield s
    s.close()


def match(intent: str, confidence: float = 0.8, verdict: str = "answer") -> MatchResult:
    return MatchResult(intent, confidence, 0.3, verdict, ((intent, confidence),), "")


# -- schema ----------------------------------------------------------------------------------------


def test_sqlite_schema_is_created_and_versioned(tmp_path):
    store = SqliteBackend(tmp_path).open()
    assert store.schema_version() == len(sqlite_module.MIGRATIONS) >= 1
    db = sqlite3.connect(store.path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "turns", "sms_outbox"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert (store.path.stat().st_mode & 0o077) == 0  # owner only
    store.close()


def test_postgres_schema_is_created_and_versioned_by_an_ordinary_role(pg_schema):
    backend = PostgresBackend(pg_schema)
    store = backend.open()
    assert store.schema_version() == len(backend.module.MIGRATIONS) >= 1
    store.close()
    tables = {r[0]: r[1] for r in pg_schema.admin("SELECT tablename, tableowner FROM pg_tables "
                                                  f"WHERE schemaname = '{pg_schema.name}'")}
    assert set(tables) == {"conversations", "turns", "sms_outbox", "schema_migrations"}
    assert set(tables.values()) == {"voicebot"}  # the app role, no superuser needed
    versions = pg_schema.admin("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(backend.module.MIGRATIONS) + 1))


def test_reopen_keeps_data_and_a_new_migration_is_applied_once(backend, monkeypatch):
    first = backend.open()
    cid = first.start_conversation(channel="chat", tenant="kff")
    first.close()
    migrations = backend.module.MIGRATIONS
    monkeypatch.setattr(backend.module, "MIGRATIONS",
                        [*migrations, "ALTER TABLE conversations ADD COLUMN language TEXT"])
    second = backend.open()
    assert second.schema_version() == len(migrations) + 1
    assert second.get(cid).tenant == "kff"
    second.close()
    third = backend.open()  # already at the new version: nothing runs twice
    assert third.schema_version() == len(migrations) + 1
    third.close()


def test_a_newer_schema_is_refused(backend):
    backend.force_version(len(backend.module.MIGRATIONS) + 5)
    with pytest.raises(StoreError, match="newer than this program"):
        backend.open()


def test_open_store_reads_the_store_section(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text(f"store:\n  path: {tmp_path}/records.db\n  retention_days: 30\n")
    s = open_store(load_settings(config))
    assert s.path == tmp_path / "records.db" and s.path.exists()
    s.close()


def test_store_config_errors_name_the_key(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("store:\n  retention_days: 0\n")
    with pytest.raises(ConfigError) as err:
        store_config(load_settings(config))
    assert "site.yaml:2" in str(err.value) and "store.retention_days" in str(err.value)


# -- the store's own methods -------------------------------------------------------------------------


def test_turns_records_and_lookups(store):
    a = store.start_conversation(channel="voice", tenant="kff", ref="test-1", caller_hash="abc",
                                 caller_tail="56")
    b = store.start_conversation(channel="chat", tenant="kff")
    store.add_turn(a, Turn(0, "jeg har mistet mit pas", "answer", "pas-mistet", 0.91,
                           ["Du skal anmelde det til politiet."], {"asr_ms": 420}))
    store.add_timings(a, 0, {"first_audio_ms": 180})
    store.add_timings(a, 7, {"first_audio_ms": 1})  # no such turn: ignored
    store.finish_conversation(a, "resolved", 4, ["pas-mistet"])
    record = store.get(a)
    assert record.outcome == "resolved" and record.survey == 4 and record.intents == ["pas-mistet"]
    assert record.ended_at and record.started_at.endswith("Z") and record.caller_tail == "56"
    assert record.turns[0].timings == {"asr_ms": 420, "first_audio_ms": 180}
    assert record.turns[0].said == ["Du skal anmelde det til politiet."]
    assert [r.id for r in store.by_ref("test-1")] == [a]
    assert store.by_ref("nope") == []
    assert [r.id for r in store.recent(2)] == [b, a]
    assert store.get("missing") is None
    d = record.as_dict()
    assert d["turns"][0]["intent"] == "pas-mistet" and d["survey"] == 4
    with pytest.raises(ValueError):
        store.finish_conversation(b, "resolved", 9)


def test_finish_may_give_the_record_to_the_tenant_that_answered(store):
    a = store.start_conversation(channel="chat", tenant="kff")
    store.finish_conversation(a, "resolved", tenant="buf")
    b = store.start_conversation(channel="chat", tenant="kff")
    store.finish_conversation(b, "resolved")
    assert (store.get(a).tenant, store.get(b).tenant) == ("buf", "kff")


def test_reached_staff_is_marked_once_with_the_queue_and_nothing_else(backend):
    clock = Clock()
    store = backend.open(now=clock)
    try:
        live = store.start_conversation(channel="voice", tenant="kff", caller_hash="h", caller_tail="56")
        other = store.start_conversation(channel="voice", tenant="kff")
        answered_at = clock.now = clock.now + dt.timedelta(minutes=2)
        assert store.mark_reached_staff(live, "borgerservice") is True  # the agent may answer before the record ends
        clock.now += dt.timedelta(minutes=1)
        store.finish_conversation(live, "transferred:human-queue")
        assert store.mark_reached_staff(live, "pladsanvisning") is False  # a second answer keeps the first
        assert store.mark_reached_staff("0" * 32, "borgerservice") is False  # not this store's record
        record = store.get(live)
        assert (record.staff_reached_at, record.staff_queue) == (timestamp(answered_at), "borgerservice")
        assert record.outcome == "transferred:human-queue" and record.caller_tail == "56"
        assert (store.get(other).staff_reached_at, store.get(other).staff_queue) == (None, None)
        assert record.as_dict()["staff_reached_at"] == timestamp(answered_at)
    finally:
        store.close()


def test_the_reached_staff_columns_come_with_a_new_migration(backend, monkeypatch):
    """A store made before them (schema 1) is upgraded in place; its old records are unmarked."""
    full = backend.module.MIGRATIONS
    monkeypatch.setattr(backend.module, "MIGRATIONS", full[:1])
    old = backend.open()
    cid = old.start_conversation(channel="voice", tenant="kff")
    old.finish_conversation(cid, "transferred:human-queue")
    old.close()
    monkeypatch.setattr(backend.module, "MIGRATIONS", full)
    new = backend.open()
    try:
        assert new.schema_version() == len(full) >= 2
        assert new.get(cid).staff_reached_at is None
        assert new.mark_reached_staff(cid, "borgerservice") and new.get(cid).staff_queue == "borgerservice"
    finally:
        new.close()


async def test_an_agent_answering_a_handed_back_call_marks_its_record(store):
    """The bot's AMI listener: AgentConnect carrying VOICEBOT_RECORD (manager.conf channelvars)
    marks that record; an event without it (a call the bot never had) or with junk marks nothing."""
    from panoramisk.message import Message

    from voicebot.telephony.conversations import VoiceDialogue

    class Ami:
        def __init__(self) -> None:
            self.listeners: dict = {}

        def on_event(self, name, callback) -> None:
            self.listeners.setdefault(name, []).append(callback)

    ami = Ami()
    VoiceDialogue(None, store=store, ami=ami)
    [listen] = ami.listeners["AgentConnect"]
    cid = store.start_conversation(channel="voice", tenant="kff")
    plain = store.start_conversation(channel="voice", tenant="kff")

    def event(**headers) -> Message:
        return Message({"Event": "AgentConnect", "Queue": "borgerservice", "CallerIDNum": "4520123456",
                        "Interface": "Local/agent1@queue-members/n", **headers})

    await listen(event(ChanVariable="OTHER=1", DestChanVariable=["X=2", "VOICEBOT_RECORD="]))
    await listen(event(ChanVariable="VOICEBOT_RECORD=../../etc"))
    await listen(event(ChanVariable=["OTHER=1", f"VOICEBOT_RECORD={cid}"]))
    record = store.get(cid)
    assert record.staff_reached_at is not None and record.staff_queue == "borgerservice"
    assert store.get(plain).staff_reached_at is None
    assert "4520123456" not in repr(record.as_dict())  # the event's caller number is not kept


def test_purge_deletes_old_records_and_outbox_rows(backend):
    clock = Clock()
    s = backend.open(now=clock)
    old = s.start_conversation(channel="voice", tenant="kff")
    s.add_turn(old, Turn(0, "gammel samtale", "other"))
    old_sms = s.queue_sms(old, "+4520123456", "Link: https://www.kk.dk")
    clock.now += dt.timedelta(days=100)
    new = s.start_conversation(channel="chat", tenant="kff")
    new_sms = s.queue_sms(new, "+4520999999", "Link")
    assert b"gammel samtale" in backend.raw_bytes()  # the check below looks in the right files
    assert s.purge(90) == 1
    assert s.get(old) is None and s.get(new) is not None
    assert s.sms_for(old) == [] and [m.id for m in s.sms_for(new)] == [new_sms.id]
    assert old_sms.id != new_sms.id
    # out of the files too (SQLite: secure_delete + checkpoint; PostgreSQL: the purge's VACUUM)
    raw = backend.raw_bytes()
    assert b"gammel samtale" not in raw and b"20123456" not in raw
    assert s.purge(90) == 0
    s.close()


# -- the recorder ----------------------------------------------------------------------------------


def test_recorder_derives_decisions_and_transfer_outcome(store):
    conv = Conversation("voice")
    rec = Recorder(store, channel="voice", tenant="kff", caller=CALLER, ref="run-7", salt=SALT)
    rec.turn(None, [Say("Velkommen til Borgerservice.")], conv)
    conv.last_result = match("pas", 0.55, "ask")
    both = (Option("pas", "Pas", "1"), Option("koerekort", "Kørekort", "2"))
    rec.turn(Utterance("pas eller kørekort", 0.9), [Ask("Mener du pas eller kørekort?", "clarify", both)],
             conv, {"eos_wait_ms": 700, "asr_ms": 350})
    rec.add_timing(first_audio_ms=120)
    conv.last_result = match("pas")
    rec.turn(Digit("1"), [Say("Et pas bestiller du ...", "pas", "https://www.kk.dk"),
                          OfferSms("pas", "Link", "Vil du have en sms?")], conv)
    rec.turn(Silence(6.0), [Ask("Er du der stadig?", "rephrase")], conv)
    conv.outcome = "transferred"
    rec.turn(Utterance("jeg vil tale med affald"), [Say("Jeg stiller dig om."),
             Transfer("affald", "dept-affald", "Affald og genbrug", "offered")], conv)
    rec.turn(Hangup(), [End("hangup")], conv)
    rec.close(conv)
    rec.close(conv, "failed")  # idempotent: the first close wins

    record = store.get(rec.conversation_id)
    assert record.outcome == "transferred:affald" and record.ref == "run-7"
    assert [t.decision for t in record.turns] == ["start", "clarify", "answer", "rephrase", "transfer", "end"]
    assert [t.heard for t in record.turns] == ["(start)", "pas eller kørekort", "[1]", "(stilhed)",
                                               "jeg vil tale med affald", "(lagt på)"]
    assert record.turns[1].timings == {"eos_wait_ms": 700, "asr_ms": 350, "first_audio_ms": 120}
    assert record.turns[1].intent == "pas" and record.turns[1].confidence == 0.55
    assert record.turns[2].intent == "pas" and record.turns[2].confidence is None  # a key press
    assert record.turns[2].said == ["Et pas bestiller du ...", "Vil du have en sms?"]
    assert record.caller_tail == "56" and len(record.caller_hash) == 16


@pytest.mark.parametrize("target,outcome", [("human-queue", "transferred:human-queue"),
                                            ("dept-jobcenter", "transferred:jobcenter")])
def test_transfer_targets(store, target, outcome):
    rec = Recorder(store, channel="voice", tenant="kff", salt=SALT)
    conv = Conversation("voice", outcome="transferred")
    rec.turn(Digit("0"), [Transfer("x", target, "X", "keypad")], conv)
    rec.close(conv)
    assert store.get(rec.conversation_id).outcome == outcome


def test_a_transfer_that_did_not_happen_keeps_the_conversation_outcome(store):
    rec = Recorder(store, channel="voice", tenant="kff", salt=SALT)
    conv = Conversation("voice", outcome="unresolved")  # no agent: hours and the SMS offer instead
    rec.turn(Digit("0"), [Transfer("x", "human-queue", "X", "keypad")], conv)
    rec.close(conv)
    assert store.get(rec.conversation_id).outcome == "unresolved"


@pytest.mark.parametrize("state,explicit,outcome", [
    ("resolved", None, "resolved"), ("open", None, "abandoned"), ("abandoned", None, "abandoned"),
    ("unresolved", None, "unresolved"), ("resolved", "failed", "failed"),
])
def test_outcome_from_conversation_state(store, state, explicit, outcome):
    conv = Conversation("chat")
    conv.outcome = state
    rec = Recorder(store, channel="chat", tenant="kff")
    rec.close(conv, explicit)
    record = store.get(rec.conversation_id)
    assert record.outcome == outcome and record.caller_hash is None and record.turns == []


def test_survey_answer_and_sms_decisions(store):
    conv = Conversation("voice")
    rec = Recorder(store, channel="voice", tenant="kff", caller=CALLER, salt=SALT)
    rec.turn(Utterance("ja tak"), [SendSms("pas", "Link"), Say("Sms'en er sendt."),
                                   Ask("Andet?", "anything_else")], conv)
    rec.turn(Utterance("nej tak"), [Ask("Giv en karakter fra 1 til 5.", "survey")], conv)
    conv.survey = 4
    rec.turn(Digit("4"), [Say("Tak for din vurdering."), End("goodbye")], conv)
    conv.intents = ["pas"]
    conv.outcome = "resolved"
    rec.close(conv)
    record = store.get(rec.conversation_id)
    assert [t.decision for t in record.turns] == ["sms", "survey", "survey"]
    assert record.survey == 4 and record.intents == ["pas"] and record.outcome == "resolved"


def test_decision_words():
    assert decision([Ask("?", "confirm_transfer")]) == "confirm"
    assert decision([Say("Svar", "pas"), Ask("Vil du stilles om?", "confirm_transfer")]) == "confirm"
    assert decision([Ask("Hvad drejer det sig om?", "menu")]) == "menu"
    assert decision([Say("Farvel."), End("goodbye")]) == "end"
    assert decision([Ask("Andet?", "anything_else")]) == "other"
    assert decision([]) == "other"


def test_a_broken_store_does_not_break_the_call(backend, caplog):
    s = backend.open()
    rec = Recorder(s, channel="voice", tenant="kff", salt=SALT)
    s.close()  # the disk went away
    rec.turn(Utterance("hej"), [Say("Hej")], Conversation("voice"))
    rec.add_timing(first_audio_ms=5)
    rec.close(Conversation("voice"))
    failures = [r for r in caplog.records if r.getMessage() == "conversation record not written"]
    assert [r.step for r in failures] == ["turn", "timing", "finish"]
    assert all(r.conversation == rec.conversation_id for r in failures)


CPR_SAID = [
    "mit cpr-nummer er 010190-1234",
    "0101901234",
    "det er 01 01 90 12 34",
    "010190 1234",
    "nul en nul en halvfems tolv fireogtredive",
    "nul et nul et ni nul en to tre fire",
    "nul en nul en 90 tolv fire og tredive",
]


def test_cpr_in_any_form_never_reaches_the_database_file(backend):
    s = backend.open()
    conv = Conversation("voice")
    rec = Recorder(s, channel="voice", tenant="kff", caller=CALLER, ref="cpr-test", salt=SALT)
    for i, text in enumerate(CPR_SAID):
        conv.last_result = match("none", 0.1, "none")
        event = Utterance(text) if i % 2 else ChatMessage(text)
        # the bot repeating the number back is caught too
        rec.turn(event, [Ask(f"Sagde du {text}?", "rephrase")], conv)
    rec.close(conv, "failed")
    record = s.get(rec.conversation_id)
    assert all("[CPR]" in t.heard and "[CPR]" in t.said[0] for t in record.turns)
    s.close()
    raw = backend.raw_bytes().lower()
    assert b"[cpr]" in raw  # the right files: the redacted turns are there
    for needle in ["0101901234", "010190", "01 01 90", "halvfems tolv", "fireogtredive", "fire og tredive",
                   "ni nul en to tre fire", "20123456", "20 12 34 56"]:
        assert needle.encode() not in raw, needle


def test_real_dialogue_conversation_is_recorded(backend):
    """The real engine (knowledge, matcher) through a voice call, CPR included."""
    from voicebot.dialogue import DialogueEngine
    from voicebot.knowledge import load_for_settings
    from voicebot.nlu import matcher_for_settings

    settings = load_settings()
    kb = load_for_settings(settings)
    engine = DialogueEngine(kb, matcher_for_settings(settings, kb))
    s = backend.open()
    conv = Conversation("voice")
    rec = Recorder(s, channel="voice", tenant="kff", caller=CALLER, salt=SALT)
    rec.turn(None, engine.start(conv), conv)
    for event in [Utterance("mit cpr nummer er nul en nul en halvfems tolv fireogtredive", 0.8),
                  Utterance("jeg har mistet mit pas", 0.9), Utterance("ja tak"), Utterance("nej tak"),
                  Digit("5")]:
        rec.turn(event, engine.handle(conv, event), conv, {"asr_ms": 300})
    rec.close(conv)
    record = s.get(rec.conversation_id)
    s.close()
    assert record.turns[1].heard == "mit cpr nummer er [CPR]"
    assert record.outcome == conv.outcome and "pas-mistet" in record.intents
    assert "pas-mistet" in [t.intent for t in record.turns]
    assert b"halvfems tolv" not in backend.raw_bytes()


def test_threads_write_at_once(store):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                conv = Conversation("chat")
                rec = Recorder(store, channel="chat", tenant="kff", ref=f"t{n}", salt=SALT)
                for j in range(3):
                    rec.turn(ChatMessage(f"spørgsmål {j}"), [Say("svar")], conv, {"match_ms": j})
                    rec.add_timing(first_audio_ms=1)
                conv.outcome = "resolved"
                rec.close(conv)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    records = store.recent(1000)
    assert len(records) == 160
    assert all(len(r.turns) == 3 and r.outcome == "resolved" for r in records)
    assert all(r.turns[2].timings == {"match_ms": 2, "first_audio_ms": 1} for r in records)
    assert len(store.by_ref("t3")) == 20


# -- the SMS outbox, on both backends ----------------------------------------------------------------


def test_outbox_claims_leases_defers_and_settles(backend):
    clock = Clock()
    s, other = backend.open(now=clock), backend.open(now=clock)  # other: a second bot process
    cid = s.start_conversation(channel="voice", tenant="kff")
    first = s.queue_sms(cid, "+4520123456", "Ring 33 66 33 66 eller cpr 010190-1234", "pas")
    assert first.text == "Ring 33 66 33 66 eller cpr [CPR]"  # our number stays, a CPR number never
    clock.now += dt.timedelta(milliseconds=1)
    second = s.queue_sms(cid, "+4520999999", "Link")
    assert [m.id for m in s.claim_sms(10, lease_s=60)] == [first.id, second.id]  # oldest first
    assert other.claim_sms(10) == []  # leased to the first process
    clock.now += dt.timedelta(seconds=61)  # that sender died: the lease ran out
    again = other.claim_sms(10, lease_s=60)
    assert [m.id for m in again] == [first.id, second.id]
    assert again[0].idempotency_key == first.idempotency_key and again[0].number == "+4520123456"
    other.defer_sms(first.id, 30, attempts=1, error="HTTP 503 for +4520123456")
    assert s.claim_sms(10) == []  # one deferred, one still leased
    clock.now += dt.timedelta(seconds=31)
    assert [m.id for m in s.claim_sms(10)] == [first.id]
    s.mark_sms_sent(first.id, 2)
    other.mark_sms_failed(second.id, "rejected +4520999999", 1)
    s.mark_sms_sent(second.id, 9)  # settled already: nothing changes
    sent, failed = s.sms_for(cid)
    assert (sent.status, sent.attempts, sent.number, sent.sent_at) == ("sent", 2, None, timestamp(clock.now))
    assert sent.last_error == "HTTP 503 for [NUMMER]" and sent.article_id == "pas"
    assert (failed.status, failed.attempts, failed.number, failed.sent_at) == ("failed", 1, None, None)
    assert failed.last_error == "rejected [NUMMER]" and "number" not in failed.as_dict()
    held = s.queue_sms(None, "+4520111111", "Link")
    s.defer_sms(held.id, 3600, attempts=0)
    assert s.claim_sms(10) == [] and s.release_deferred_sms() == 1
    assert [m.id for m in other.claim_sms(10)] == [held.id]
    assert s.sms_for("missing") == []
    s.close()
    other.close()


# -- PostgreSQL: several processes on one database ---------------------------------------------------


def _at_once(n: int, work) -> list:
    """Run ``work(i)`` in ``n`` threads released together; their results, or raise the first error."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_processes_claiming_at_once_never_get_the_same_message(pg_schema):
    backend = PostgresBackend(pg_schema)
    stores = [backend.open(pool_max=4), backend.open(pool_max=4)]  # two pools, as two bot processes
    cid = stores[0].start_conversation(channel="voice", tenant="kff")
    queued = {stores[0].queue_sms(cid, f"+45{20000000 + i}", f"sms {i}").id for i in range(300)}

    def drain(i: int) -> list[str]:
        got: list[str] = []
        while batch := stores[i % 2].claim_sms(limit=3, lease_s=600):
            got += [m.id for m in batch]
        return got

    claimed = _at_once(8, drain)  # four senders in each process
    every = [sms_id for got in claimed for sms_id in got]
    assert len(every) == len(set(every)) == len(queued) and set(every) == queued
    assert all(sum(len(claimed[i]) for i in range(p, 8, 2)) for p in (0, 1))  # both processes took some
    assert stores[1].claim_sms(10) == []  # everything is leased
    for s in stores:
        s.close()


def test_migrations_run_once_when_two_stores_open_at_once(pg_schema, monkeypatch):
    backend = PostgresBackend(pg_schema)
    # a slow last migration that fails when run twice: without the lock both openers would run it
    slow = "CREATE TABLE migration_runs (n integer); INSERT INTO migration_runs SELECT 1 FROM pg_sleep(0.3)"
    monkeypatch.setattr(backend.module, "MIGRATIONS", [*backend.module.MIGRATIONS, slow])
    stores = _at_once(2, lambda i: backend.open())
    assert pg_schema.admin("SELECT count(*) FROM migration_runs") == [(1,)]
    versions = pg_schema.admin("SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(backend.module.MIGRATIONS) + 1))
    assert all(s.schema_version() == len(backend.module.MIGRATIONS) for s in stores)
    for s in stores:
        s.close()


def test_timestamps_are_typed_in_postgresql_and_text_to_the_bot(pg_schema):
    from voicebot.store.postgres import PostgresStore

    clock = Clock()
    store = PostgresBackend(pg_schema).open(now=clock)
    cid = store.start_conversation(channel="chat", tenant="kff")
    assert store.get(cid).started_at == "2026-12-01T12:00:00.000Z"
    store.close()
    # a session in local time changes nothing for the bot: the loader converts to UTC text
    local = PostgresStore(pg_schema.dsn("-c TimeZone=Europe/Copenhagen"), password=pg_schema.password)
    assert local.get(cid).started_at == "2026-12-01T12:00:00.000Z"
    local.close()
    rows = pg_schema.admin("SELECT pg_typeof(started_at)::text, started_at = '2026-12-01 13:00+01' "
                           "FROM conversations")
    assert rows == [("timestamp with time zone", True)]


# -- PostgreSQL from the configuration, the commands and doctor ---------------------------------------


@pytest.fixture
def pg_site(pg_schema, tmp_path, monkeypatch):
    """A site.yaml choosing PostgreSQL; the password only in the environment."""
    from voicebot import config

    monkeypatch.setattr(config.read_secrets, "__defaults__", (tmp_path / "no-secrets.env",))
    for name in ("PGPASSWORD", "VOICEBOT_PG_DSN", "VOICEBOT_PG_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOICEBOT_PG_PASSWORD", pg_schema.password)
    path = tmp_path / "site.yaml"
    path.write_text(f'store:\n  backend: postgresql\n  dsn: "{pg_schema.dsn()}"\n  pool_max: 3\n')
    return path


def test_open_store_postgresql_with_the_password_from_the_environment(pg_site, pg_schema, monkeypatch):
    from voicebot.store.postgres import PostgresStore

    settings = load_settings(pg_site)
    store = open_store(settings)
    assert isinstance(store, PostgresStore) and store._pool.max_size == 3
    store.start_conversation(channel="chat", tenant="kff")
    store.close()
    where = store_location(settings)
    assert where.startswith("postgresql ") and f"search_path={pg_schema.name}" in where
    monkeypatch.setenv("VOICEBOT_PG_PASSWORD", "not-the-password")
    with pytest.raises(StoreError, match="password authentication failed") as err:
        open_store(settings)
    assert "not-the-password" not in str(err.value)
    monkeypatch.delenv("VOICEBOT_PG_PASSWORD")
    monkeypatch.setenv("PGPASSWORD", pg_schema.password)  # libpq's own variable works as well
    assert len(open_store(settings).recent(5)) == 1


def test_the_dsn_from_the_environment_wins(pg_site, pg_schema, tmp_path, monkeypatch):
    config = tmp_path / "other.yaml"
    config.write_text("store:\n  backend: postgresql\n  dsn: 'host=/nonexistent dbname=nothing'\n")
    monkeypatch.setenv("VOICEBOT_PG_DSN", pg_schema.dsn())
    store = open_store(load_settings(config))
    assert "dbname=voicebot_test" in store.where and f"search_path={pg_schema.name}" in store.where
    store.close()


@pytest.mark.parametrize("store_yaml,key,problem", [
    ("backend: postgresql", "store.backend", "postgresql needs store.dsn"),
    ("backend: postgresql\n  dsn: 'host=/run/pg password=hunter2'", "store.dsn", "must not hold a password"),
    ("backend: postgresql\n  dsn: 'postgresql://bot:hunter2@db/voicebot'", "store.dsn", "must not hold a password"),
    ("backend: postgresql\n  dsn: 'nonsense'", "store.dsn", 'missing "=" after "nonsense"'),
    ("backend: postgresql\n  dsn: 'dbname=v'\n  pool_min: 4\n  pool_max: 2", "store.pool_max", "at least pool_min"),
    ("backend: mysql", "store.backend", "must be one of 'sqlite', 'postgresql'"),
])
def test_postgresql_config_errors_name_file_line_and_key(tmp_path, monkeypatch, store_yaml, key, problem):
    monkeypatch.delenv("VOICEBOT_PG_DSN", raising=False)
    config = tmp_path / "site.yaml"
    config.write_text(f"store:\n  {store_yaml}\n")
    with pytest.raises(ConfigError) as err:
        store_config(load_settings(config))
    message = str(err.value)
    assert "site.yaml:" in message and key in message and problem in message
    assert "hunter2" not in message


def test_doctor_names_the_backend_and_where_but_no_password(pg_site, pg_schema, tmp_path, monkeypatch):
    from voicebot.commands.doctor import check_store

    check = asyncio.run(check_store(load_settings(pg_site)))
    assert check.ok and check.detail.startswith("postgresql ") and f"search_path={pg_schema.name}" in check.detail
    assert "no conversations yet" in check.detail and pg_schema.password not in check.detail
    monkeypatch.setenv("VOICEBOT_PG_PASSWORD", "not-the-password")
    check = asyncio.run(check_store(load_settings(pg_site)))
    assert not check.ok and "password authentication failed" in check.detail
    assert "VOICEBOT_PG_PASSWORD" in check.detail and "not-the-password" not in check.detail
    sqlite_site = tmp_path / "sqlite.yaml"
    sqlite_site.write_text(f"store:\n  path: {tmp_path}/v.db\n")
    check = asyncio.run(check_store(load_settings(sqlite_site)))
    assert check.ok and check.detail.startswith(f"sqlite {tmp_path}/v.db")


def test_store_purge_command_on_postgresql(pg_site, pg_schema, capsys):
    from voicebot.cli import main

    clock = Clock()
    clock.now = utc_now() - dt.timedelta(days=100)
    store = PostgresBackend(pg_schema).open(now=clock)
    old = store.start_conversation(channel="voice", tenant="kff")
    clock.now = utc_now()
    new = store.start_conversation(channel="voice", tenant="kff")
    assert main(["--config", str(pg_site), "store", "purge"]) == 0
    assert "deleted 1 conversation records older than 90 days" in capsys.readouterr().out
    assert store.get(old) is None and store.get(new) is not None
    store.close()
