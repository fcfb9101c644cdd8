"""The SQLite record store and the recorder, on real database files in tmp dirs."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading

import pytest

from voicebot.config import load_settings
from voicebot.dialogue.engine import Conversation
from voicebot.dialogue.events import (Ask, ChatMessage, Digit, End, Hangup, OfferSms, Option, Say,
                                      SendSms, Silence, Transfer, Utterance)
from voicebot.nlu.matcher import MatchResult
from voicebot.store import Recorder, StoreError, open_store
from voicebot.store import sqlite as sqlite_module
from voicebot.store.base import Turn
from voicebot.store.recorder import decision
from voicebot.store.sqlite import MIGRATIONS, SqliteStore

SALT = b"test-salt" * 4
CALLER = "+45 20 12 34 56"


class Clock:
    """A settable clock, so purge can be tested without waiting 90 days."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "var" / "voicebot.db")
    yield s
    s.close()


def match(intent: str, confidence: float = 0.8, verdict: str = "answer") -> MatchResult:
    return MatchResult(intent, confidence, 0.3, verdict, ((intent, confidence),), "")


def file_bytes(store: SqliteStore) -> bytes:
    """Everything SQLite has on disk for this store: the file, its WAL and shared memory."""
    out = b""
    for suffix in ("", "-wal", "-shm"):
        path = store.path.with_name(store.path.name + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


# -- schema ----------------------------------------------------------------------------------------


def test_schema_is_created_and_versioned(store):
    assert store.schema_version() == len(MIGRATIONS) >= 1
    db = sqlite3.connect(store.path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "turns", "sms_outbox"} <= tables
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert (store.path.stat().st_mode & 0o077) == 0  # owner only


def test_reopen_keeps_data_and_a_new_migration_is_applied_once(tmp_path, monkeypatch):
    path = tmp_path / "v.db"
    first = SqliteStore(path)
    cid = first.start_conversation(channel="chat", tenant="kff")
    first.close()
    monkeypatch.setattr(sqlite_module, "MIGRATIONS",
                        [*MIGRATIONS, "ALTER TABLE conversations ADD COLUMN language TEXT"])
    second = SqliteStore(path)
    assert second.schema_version() == len(MIGRATIONS) + 1
    assert second.get(cid).tenant == "kff"
    second.close()
    third = SqliteStore(path)  # already at the new version: nothing runs twice
    assert third.schema_version() == len(MIGRATIONS) + 1
    third.close()


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "v.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.close()
    with pytest.raises(StoreError, match="newer than this program"):
        SqliteStore(path)


def test_open_store_reads_the_store_section(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text(f"store:\n  path: {tmp_path}/records.db\n  retention_days: 30\n")
    s = open_store(load_settings(config))
    assert s.path == tmp_path / "records.db" and s.path.exists()
    s.close()


def test_store_config_errors_name_the_key(tmp_path):
    from voicebot.errors import ConfigError
    from voicebot.store import store_config

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


def test_purge_deletes_old_records_and_outbox_rows(tmp_path):
    clock = Clock()
    s = SqliteStore(tmp_path / "v.db", now=clock)
    old = s.start_conversation(channel="voice", tenant="kff")
    s.add_turn(old, Turn(0, "gammel samtale", "other"))
    old_sms = s.queue_sms(old, "+4520123456", "Link: https://www.kk.dk")
    clock.now += dt.timedelta(days=100)
    new = s.start_conversation(channel="chat", tenant="kff")
    new_sms = s.queue_sms(new, "+4520999999", "Link")
    assert s.purge(90) == 1
    assert s.get(old) is None and s.get(new) is not None
    assert s.sms_for(old) == [] and [m.id for m in s.sms_for(new)] == [new_sms.id]
    assert old_sms.id != new_sms.id
    assert b"gammel samtale" not in file_bytes(s) and b"20123456" not in file_bytes(s)
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


def test_a_broken_store_does_not_break_the_call(tmp_path, caplog):
    s = SqliteStore(tmp_path / "v.db")
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


def test_cpr_in_any_form_never_reaches_the_database_file(tmp_path):
    s = SqliteStore(tmp_path / "v.db")
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
    raw = file_bytes(s).lower()
    for needle in ["0101901234", "010190", "01 01 90", "halvfems tolv", "fireogtredive", "fire og tredive",
                   "ni nul en to tre fire", "20123456", "20 12 34 56"]:
        assert needle.encode() not in raw, needle


def test_real_dialogue_conversation_is_recorded(tmp_path):
    """The real engine (knowledge, matcher) through a voice call, CPR included."""
    from voicebot.dialogue import DialogueEngine
    from voicebot.knowledge import load_for_settings
    from voicebot.nlu import matcher_for_settings

    settings = load_settings()
    kb = load_for_settings(settings)
    engine = DialogueEngine(kb, matcher_for_settings(settings, kb))
    s = SqliteStore(tmp_path / "v.db")
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
    assert b"halvfems tolv" not in file_bytes(s)


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
