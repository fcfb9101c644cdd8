"""The default store: one SQLite file (WAL), one connection guarded by a lock.

The bot writes a few small rows per turn from worker threads; one serialized connection is far
below SQLite's limits at the 40 simultaneous calls we design for, and it keeps transactions simple.
``secure_delete`` and a WAL checkpoint after purges and sent SMS make deleted data leave the file
rather than linger in free pages.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from voicebot.privacy import redact
from voicebot.store.base import (CHANNELS, CONVERSATION_COLUMNS, SMS_COLUMNS, ConversationRecord, SmsMessage,
                                 StoreError, Turn, conversation_from_row,
                                 clean, clean_timings, sms_from_row, timestamp, utc_now)

log = logging.getLogger(__name__)

# Each entry upgrades the schema by one version (PRAGMA user_version). Append; never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        ref TEXT,
        channel TEXT NOT NULL,
        tenant TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        caller_hash TEXT,
        caller_tail TEXT,
        outcome TEXT,
        survey INTEGER CHECK (survey BETWEEN 1 AND 5),
        intents TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX conversations_ref ON conversations(ref);
    CREATE INDEX conversations_started ON conversations(started_at);
    CREATE TABLE turns (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        at TEXT NOT NULL,
        heard TEXT NOT NULL,
        intent TEXT,
        confidence REAL,
        decision TEXT NOT NULL,
        said TEXT NOT NULL DEFAULT '[]',
        timings TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (conversation_id, idx)
    );
    CREATE TABLE sms_outbox (
        id TEXT PRIMARY KEY,
        conversation_id TEXT,
        number TEXT,
        text TEXT NOT NULL,
        article_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        idempotency_key TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        next_attempt_at TEXT NOT NULL,
        claimed_until TEXT
    );
    CREATE INDEX sms_outbox_due ON sms_outbox(status, next_attempt_at);
    CREATE INDEX sms_outbox_conversation ON sms_outbox(conversation_id);
    CREATE INDEX sms_outbox_created ON sms_outbox(created_at);
    """,
    # 2: a transferred call reached staff (an agent answered it; AMI AgentConnect), and in which queue
    """
    ALTER TABLE conversations ADD COLUMN staff_reached_at TEXT;
    ALTER TABLE conversations ADD COLUMN staff_queue TEXT;
    """,
]

class SqliteStore:
    """``Store`` on one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path, *, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.path = Path(path)
        self._now = now
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # records are personal data: owner only
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                           "secure_delete=ON", "busy_timeout=10000"):
                self._db.execute(f"PRAGMA {pragma}")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the record store: {exc}") from None

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; sqlite errors become ``StoreError``."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from None

    def _migrate(self) -> None:
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {version} is newer than this program "
                             f"knows ({len(MIGRATIONS)}); upgrade the bot")
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._tx() as db:
                for statement in (s.strip() for s in sql.split(";")):
                    if statement:
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            log.info("record store schema upgraded", extra={"path": str(self.path), "version": number})

    def describe(self) -> dict[str, str]:
        """Which store this is, for ops (/healthz, doctor)."""
        return {"backend": "sqlite", "where": str(self.path)}

    def schema_version(self) -> int:
        with self._read() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _checkpoint(self) -> None:
        """Fold the WAL into the file and empty it, so overwritten data is gone from both."""
        with self._read() as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _ts(self, delta_s: float = 0.0) -> str:
        return timestamp(self._now() + dt.timedelta(seconds=delta_s))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- conversations -------------------------------------------------------------------------

    def start_conversation(self, *, channel: str, tenant: str, ref: str | None = None,
                           caller_hash: str | None = None, caller_tail: str | None = None,
                           conversation_id: str | None = None) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
        cid = conversation_id or uuid.uuid4().hex
        with self._tx() as db:
            db.execute("INSERT INTO conversations (id, ref, channel, tenant, started_at, caller_hash, "
                       "caller_tail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (cid, clean(ref), channel, tenant, self._ts(), caller_hash, caller_tail))
        return cid

    def add_turn(self, conversation_id: str, turn: Turn) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO turns (conversation_id, idx, at, heard, intent, confidence, decision, "
                       "said, timings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (conversation_id, turn.index, turn.at or self._ts(), redact(turn.heard),
                        clean(turn.intent), turn.confidence, redact(turn.decision),
                        json.dumps([redact(s) for s in turn.said], ensure_ascii=False),
                        json.dumps(clean_timings(turn.timings))))

    def add_timings(self, conversation_id: str, index: int, timings: dict[str, int]) -> None:
        with self._tx() as db:
            row = db.execute("SELECT timings FROM turns WHERE conversation_id = ? AND idx = ?",
                             (conversation_id, index)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0]), **clean_timings(timings)}
            db.execute("UPDATE turns SET timings = ? WHERE conversation_id = ? AND idx = ?",
                       (json.dumps(merged), conversation_id, index))

    def finish_conversation(self, conversation_id: str, outcome: str, survey: int | None = None,
                            intents: list[str] | None = None, *, tenant: str | None = None) -> None:
        if survey is not None and not 1 <= survey <= 5:
            raise ValueError(f"survey must be 1-5, got {survey}")
        with self._tx() as db:
            db.execute("UPDATE conversations SET ended_at = ?, outcome = ?, survey = ?, "
                       "intents = COALESCE(?, intents), tenant = COALESCE(?, tenant) WHERE id = ?",
                       (self._ts(), clean(outcome), survey,
                        None if intents is None else json.dumps([clean(i) for i in intents]),
                        tenant, conversation_id))

    def mark_reached_staff(self, conversation_id: str, queue: str | None = None) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE conversations SET staff_reached_at = ?, staff_queue = ? "
                              "WHERE id = ? AND staff_reached_at IS NULL",
                              (self._ts(), clean(queue), conversation_id)).rowcount > 0

    def get(self, conversation_id: str) -> ConversationRecord | None:
        found = self._conversations("WHERE id = ?", (conversation_id,))
        return found[0] if found else None

    def by_ref(self, ref: str) -> list[ConversationRecord]:
        """Conversations the test caller tagged with ``ref``, newest first."""
        return self._conversations("WHERE ref = ? ORDER BY started_at DESC", (ref,))

    def recent(self, n: int = 20) -> list[ConversationRecord]:
        return self._conversations("ORDER BY started_at DESC, rowid DESC LIMIT ?", (max(0, n),))

    def _conversations(self, where: str, args: tuple) -> list[ConversationRecord]:
        with self._read() as db:
            rows = db.execute(f"SELECT {CONVERSATION_COLUMNS} FROM conversations {where}", args).fetchall()
            records = [conversation_from_row(r, json.loads(r[10])) for r in rows]
            for record in records:
                record.turns = [
                    Turn(index=t[0], at=t[1], heard=t[2], intent=t[3], confidence=t[4], decision=t[5],
                         said=json.loads(t[6]), timings=json.loads(t[7]))
                    for t in db.execute("SELECT idx, at, heard, intent, confidence, decision, said, "
                                        "timings FROM turns WHERE conversation_id = ? ORDER BY idx",
                                        (record.id,))]
        return records

    def purge(self, older_than_days: float) -> int:
        """Delete conversations (with their turns) and outbox rows older than the retention."""
        cutoff = self._ts(-older_than_days * 86400)
        with self._tx() as db:
            db.execute("DELETE FROM turns WHERE conversation_id IN "
                       "(SELECT id FROM conversations WHERE started_at < ?)", (cutoff,))
            deleted = db.execute("DELETE FROM conversations WHERE started_at < ?", (cutoff,)).rowcount
            sms = db.execute("DELETE FROM sms_outbox WHERE created_at < ?", (cutoff,)).rowcount
        self._checkpoint()
        log.info("records purged", extra={"conversations": deleted, "sms": sms, "before": cutoff})
        return deleted

    # -- SMS outbox ------------------------------------------------------------------------------

    def queue_sms(self, conversation_id: str | None, number: str, text: str,
                  article_id: str | None = None) -> SmsMessage:
        """Queue a message. Its text is the article's (it may carry our phone number), so only a
        CPR number is removed from it; the recipient's number is kept until sent or given up."""
        now = self._ts()
        message = SmsMessage(id=uuid.uuid4().hex, conversation_id=conversation_id,
                             text=redact(text, keep_numbers=True), idempotency_key=str(uuid.uuid4()),
                             created_at=now, number=number, article_id=article_id)
        with self._tx() as db:
            db.execute("INSERT INTO sms_outbox (id, conversation_id, number, text, article_id, status, "
                       "attempts, idempotency_key, created_at, next_attempt_at) "
                       "VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
                       (message.id, conversation_id, number, message.text, article_id,
                        message.idempotency_key, now, now))
        return message

    def claim_sms(self, limit: int = 10, lease_s: float = 60.0) -> list[SmsMessage]:
        """Take up to ``limit`` due messages for ``lease_s`` seconds. A sender that dies holding
        one lets the lease run out; the retry reuses the idempotency key, so nothing goes twice."""
        now = self._ts()
        with self._tx() as db:
            rows = db.execute(f"SELECT {SMS_COLUMNS} FROM sms_outbox WHERE status = 'queued' "
                              "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
                              "ORDER BY created_at LIMIT ?", (now, now, max(0, limit))).fetchall()
            db.executemany("UPDATE sms_outbox SET claimed_until = ? WHERE id = ?",
                           [(self._ts(lease_s), r[0]) for r in rows])
        return [sms_from_row(r) for r in rows]

    def mark_sms_sent(self, sms_id: str, attempts: int) -> None:
        self._settle(sms_id, "sent", attempts, None)

    def mark_sms_failed(self, sms_id: str, error: str, attempts: int) -> None:
        """Give up on a message; the number goes too (nothing more will be sent to it)."""
        self._settle(sms_id, "failed", attempts, error)

    def _settle(self, sms_id: str, status: str, attempts: int, error: str | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE sms_outbox SET status = ?, attempts = ?, number = NULL, "
                       "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, "
                       "last_error = COALESCE(?, last_error), claimed_until = NULL "
                       "WHERE id = ? AND status = 'queued'",
                       (status, attempts, status, self._ts(), clean(error), sms_id))
        self._checkpoint()

    def defer_sms(self, sms_id: str, seconds: float, attempts: int, error: str | None = None) -> None:
        """Leave a message queued and try again in ``seconds``."""
        with self._tx() as db:
            db.execute("UPDATE sms_outbox SET attempts = ?, next_attempt_at = ?, claimed_until = NULL, "
                       "last_error = COALESCE(?, last_error) WHERE id = ? AND status = 'queued'",
                       (attempts, self._ts(seconds), clean(error), sms_id))

    def release_deferred_sms(self) -> int:
        """Make every queued message due now (a real gateway starts after the log gateway held them)."""
        now = self._ts()
        with self._tx() as db:
            return db.execute("UPDATE sms_outbox SET next_attempt_at = ? WHERE status = 'queued' "
                              "AND next_attempt_at > ?", (now, now)).rowcount

    def sms_for(self, conversation_id: str) -> list[SmsMessage]:
        with self._read() as db:
            rows = db.execute(f"SELECT {SMS_COLUMNS} FROM sms_outbox WHERE conversation_id = ? "
                              "ORDER BY created_at", (conversation_id,)).fetchall()
        return [sms_from_row(r) for r in rows]

