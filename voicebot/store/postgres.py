"""The PostgreSQL store: several bot processes (e.g. two ``voicebot serve`` on one Asterisk) share
one database through psycopg 3 connection pools.

Behaviour is SQLite's (``sqlite.py``): the same redaction before writing, the same record shapes
and ordering. Columns are typed (``timestamptz``, ``jsonb``) so SQL run on the database by hand
reads naturally; timestamps come back as the store's fixed-width UTC text (``base.timestamp``), so
callers and the report code see no difference. Across processes: migrations run under an advisory
lock, and the SMS outbox is claimed with ``FOR UPDATE SKIP LOCKED`` plus a lease.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.datetime import TimestamptzBinaryLoader, TimestamptzLoader
from psycopg.types.json import Json, Jsonb
from psycopg_pool import ConnectionPool

from voicebot.privacy import redact
from voicebot.store.base import (CHANNELS, CONVERSATION_COLUMNS, SMS_COLUMNS, ConversationRecord, SmsMessage,
                                 StoreError, Turn, conversation_from_row,
                                 clean, clean_timings, sms_from_row, timestamp, utc_now)

log = logging.getLogger(__name__)

# Each entry upgrades the schema by one version (a row in schema_migrations). Append; never edit.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE conversations (
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- insertion order (SQLite's rowid) for ties
        id text PRIMARY KEY,
        ref text,
        channel text NOT NULL,
        tenant text NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        caller_hash text,
        caller_tail text,
        outcome text,
        survey integer CHECK (survey BETWEEN 1 AND 5),
        intents jsonb NOT NULL DEFAULT '[]'
    );
    CREATE INDEX conversations_ref ON conversations(ref);
    CREATE INDEX conversations_started ON conversations(started_at);
    CREATE TABLE turns (
        conversation_id text NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        idx integer NOT NULL,
        at timestamptz NOT NULL,
        heard text NOT NULL,
        intent text,
        confidence double precision,          -- not real: 0.55 must read back as 0.55
        decision text NOT NULL,
        said jsonb NOT NULL DEFAULT '[]',
        timings json NOT NULL DEFAULT '{}',   -- json, not jsonb: keys stay in the order measured
        PRIMARY KEY (conversation_id, idx)
    );
    CREATE TABLE sms_outbox (
        seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        id text PRIMARY KEY,
        conversation_id text,
        number text,
        text text NOT NULL,
        article_id text,
        status text NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        idempotency_key text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL,
        sent_at timestamptz,
        last_error text,
        next_attempt_at timestamptz NOT NULL,
        claimed_until timestamptz
    );
    CREATE INDEX sms_outbox_due ON sms_outbox(status, next_attempt_at);
    CREATE INDEX sms_outbox_conversation ON sms_outbox(conversation_id);
    CREATE INDEX sms_outbox_created ON sms_outbox(created_at);
    """,
    # 2: a transferred call reached staff (an agent answered it; AMI AgentConnect), and in which queue
    """
    ALTER TABLE conversations ADD COLUMN staff_reached_at timestamptz;
    ALTER TABLE conversations ADD COLUMN staff_queue text;
    """,
]

# pg_advisory_lock key for migrations ("voicebot" in ASCII): one instance migrates, the others wait
MIGRATION_LOCK = 0x766F696365626F74
STATEMENT_TIMEOUT_MS = 10_000  # as SQLite's busy timeout: a stuck lock fails the write, not the call


class _StampLoader(TimestamptzLoader):
    """timestamptz -> the store's UTC text, whatever the session's time zone."""

    def load(self, data) -> str:  # type: ignore[override]
        return timestamp(super().load(data))


class _StampBinaryLoader(TimestamptzBinaryLoader):
    def load(self, data) -> str:  # type: ignore[override]
        return timestamp(super().load(data))


def register_loaders(conn: psycopg.Connection) -> None:
    conn.adapters.register_loader("timestamptz", _StampLoader)
    conn.adapters.register_loader("timestamptz", _StampBinaryLoader)


def safe_dsn(dsn: str) -> str:
    """The DSN as a key=value string without its password: for logs, errors and doctor."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparsable DSN)"
    params.pop("password", None)
    return make_conninfo(**params) or "(libpq defaults)"


def connect(dsn: str, password: str | None = None, **kwargs) -> psycopg.Connection:
    """One connection with the store's timestamp loaders (migrations, read-only readers)."""
    extra = {"password": password} if password else {}
    conn = psycopg.connect(dsn, **extra, **kwargs)
    register_loaders(conn)
    return conn


class PostgresStore:
    """``Store`` on a PostgreSQL database; safe to share between threads and processes.

    ``password`` (from ``$VOICEBOT_PG_PASSWORD``) is passed to libpq beside the DSN; without it
    libpq uses ``$PGPASSWORD`` or ``~/.pgpass``.
    """

    def __init__(self, dsn: str, *, password: str | None = None, pool_min: int = 1, pool_max: int = 10,
                 timeout_s: float = 10.0, now: Callable[[], dt.datetime] = utc_now) -> None:
        self.where = safe_dsn(dsn)
        self._now = now
        try:
            with connect(dsn, password, connect_timeout=max(1, int(timeout_s))) as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot open the record store: {error_text(exc)}") from None
        # check: a connection broken by a server restart is replaced, not handed to a write
        self._pool = ConnectionPool(dsn, min_size=pool_min, max_size=pool_max, open=False,
                                    kwargs={"password": password} if password else {},
                                    configure=_configure, check=ConnectionPool.check_connection,
                                    timeout=timeout_s, name="voicebot-store")
        try:
            self._pool.open(wait=True, timeout=timeout_s)
        except psycopg.Error as exc:
            self._pool.close()  # or its workers go on trying to connect
            raise StoreError(f"{self.where}: cannot open the record store: {error_text(exc)}") from None

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection (committed on success); errors become ``StoreError``."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:  # PoolTimeout and PoolClosed are psycopg errors too
            raise StoreError(f"{self.where}: {error_text(exc)}") from None

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Apply the missing migrations, each in its own transaction. Under the advisory lock a
        second instance starting at the same time waits, then finds nothing left to do."""
        conn.autocommit = True
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                         "applied_at timestamptz NOT NULL DEFAULT now())")
            version = _version(conn)
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.where}: schema version {version} is newer than this program "
                                 f"knows ({len(MIGRATIONS)}); upgrade the bot")
            for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (number,))
                log.info("record store schema upgraded", extra={"dsn": self.where, "version": number})
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def describe(self) -> dict[str, str]:
        """Which store this is, for ops (/healthz, doctor): the DSN without its password."""
        return {"backend": "postgresql", "where": self.where}

    def schema_version(self) -> int:
        with self._tx() as conn:
            return _version(conn)

    def _ts(self, delta_s: float = 0.0) -> str:
        return timestamp(self._now() + dt.timedelta(seconds=delta_s))

    def close(self) -> None:
        self._pool.close()

    # -- conversations -------------------------------------------------------------------------

    def start_conversation(self, *, channel: str, tenant: str, ref: str | None = None,
                           caller_hash: str | None = None, caller_tail: str | None = None,
                           conversation_id: str | None = None) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {CHANNELS}, got {channel!r}")
        cid = conversation_id or uuid.uuid4().hex
        with self._tx() as conn:
            conn.execute("INSERT INTO conversations (id, ref, channel, tenant, started_at, caller_hash, "
                         "caller_tail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (cid, clean(ref), channel, tenant, self._ts(), caller_hash, caller_tail))
        return cid

    def add_turn(self, conversation_id: str, turn: Turn) -> None:
        with self._tx() as conn:
            conn.execute("INSERT INTO turns (conversation_id, idx, at, heard, intent, confidence, decision, "
                         "said, timings) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                         (conversation_id, turn.index, turn.at or self._ts(), redact(turn.heard),
                          clean(turn.intent), turn.confidence, redact(turn.decision),
                          Jsonb([redact(s) for s in turn.said]), Json(clean_timings(turn.timings))))

    def add_timings(self, conversation_id: str, index: int, timings: dict[str, int]) -> None:
        with self._tx() as conn:
            row = conn.execute("SELECT timings FROM turns WHERE conversation_id = %s AND idx = %s FOR UPDATE",
                               (conversation_id, index)).fetchone()
            if row is None:
                return
            merged = {**row[0], **clean_timings(timings)}
            conn.execute("UPDATE turns SET timings = %s WHERE conversation_id = %s AND idx = %s",
                         (Json(merged), conversation_id, index))

    def finish_conversation(self, conversation_id: str, outcome: str, survey: int | None = None,
                            intents: list[str] | None = None, *, tenant: str | None = None) -> None:
        if survey is not None and not 1 <= survey <= 5:
            raise ValueError(f"survey must be 1-5, got {survey}")
        with self._tx() as conn:
            conn.execute("UPDATE conversations SET ended_at = %s, outcome = %s, survey = %s, "
                         "intents = COALESCE(%s, intents), tenant = COALESCE(%s, tenant) WHERE id = %s",
                         (self._ts(), clean(outcome), survey,
                          None if intents is None else Jsonb([clean(i) for i in intents]), tenant,
                          conversation_id))

    def mark_reached_staff(self, conversation_id: str, queue: str | None = None) -> bool:
        with self._tx() as conn:
            return conn.execute("UPDATE conversations SET staff_reached_at = %s, staff_queue = %s "
                                "WHERE id = %s AND staff_reached_at IS NULL",
                                (self._ts(), clean(queue), conversation_id)).rowcount > 0

    def get(self, conversation_id: str) -> ConversationRecord | None:
        found = self._conversations("WHERE id = %s", (conversation_id,))
        return found[0] if found else None

    def by_ref(self, ref: str) -> list[ConversationRecord]:
        """Conversations the test caller tagged with ``ref``, newest first."""
        return self._conversations("WHERE ref = %s ORDER BY started_at DESC, seq DESC", (ref,))

    def recent(self, n: int = 20) -> list[ConversationRecord]:
        return self._conversations("ORDER BY started_at DESC, seq DESC LIMIT %s", (max(0, n),))

    def _conversations(self, where: str, args: tuple) -> list[ConversationRecord]:
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {CONVERSATION_COLUMNS} FROM conversations {where}", args).fetchall()
            records = [conversation_from_row(r, r[10]) for r in rows]
            by_id = {record.id: record for record in records}
            # one query for every record's turns, not one per record
            for t in conn.execute("SELECT conversation_id, idx, at, heard, intent, confidence, decision, "
                                  "said, timings FROM turns WHERE conversation_id = ANY(%s) "
                                  "ORDER BY conversation_id, idx", (list(by_id),)):
                by_id[t[0]].turns.append(Turn(index=t[1], at=t[2], heard=t[3], intent=t[4], confidence=t[5],
                                              decision=t[6], said=t[7], timings=t[8]))
        return records

    def purge(self, older_than_days: float) -> int:
        """Delete conversations (their turns go with them) and outbox rows older than the retention."""
        cutoff = self._ts(-older_than_days * 86400)
        with self._tx() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # a large first purge may take a while
            deleted = conn.execute("DELETE FROM conversations WHERE started_at < %s", (cutoff,)).rowcount
            sms = conn.execute("DELETE FROM sms_outbox WHERE created_at < %s", (cutoff,)).rowcount
        try:
            self._vacuum()
        except StoreError as exc:  # the rows are gone; autovacuum will prune them later
            log.warning("vacuum after purge failed", extra={"error": str(exc)})
        log.info("records purged", extra={"conversations": deleted, "sms": sms, "before": cutoff})
        return deleted

    def _vacuum(self) -> None:
        """Prune the dead rows now rather than when autovacuum gets round to it (a daily purge is
        far below its threshold). Unlike SQLite's secure_delete this does not promise the bytes are
        overwritten: PostgreSQL keeps no such guarantee (nor for its WAL)."""
        with self._tx() as conn:
            conn.autocommit = True  # VACUUM cannot run in a transaction
            try:
                conn.execute("SET statement_timeout = 0")
                conn.execute("VACUUM conversations, turns, sms_outbox")
            finally:
                conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
                conn.autocommit = False

    # -- SMS outbox ------------------------------------------------------------------------------

    def queue_sms(self, conversation_id: str | None, number: str, text: str,
                  article_id: str | None = None) -> SmsMessage:
        """Queue a message. Only a CPR number is removed from its text (it may carry our phone
        number); the recipient's number is kept until sent or given up."""
        now = self._ts()
        message = SmsMessage(id=uuid.uuid4().hex, conversation_id=conversation_id,
                             text=redact(text, keep_numbers=True), idempotency_key=str(uuid.uuid4()),
                             created_at=now, number=number, article_id=article_id)
        with self._tx() as conn:
            conn.execute("INSERT INTO sms_outbox (id, conversation_id, number, text, article_id, status, "
                         "attempts, idempotency_key, created_at, next_attempt_at) "
                         "VALUES (%s, %s, %s, %s, %s, 'queued', 0, %s, %s, %s)",
                         (message.id, conversation_id, number, message.text, article_id,
                          message.idempotency_key, now, now))
        return message

    def claim_sms(self, limit: int = 10, lease_s: float = 60.0) -> list[SmsMessage]:
        """Take up to ``limit`` due messages for ``lease_s`` seconds. Rows another process is
        claiming right now are skipped (SKIP LOCKED), and once claimed their lease keeps them out
        of every other claim until it runs out; the retry reuses the idempotency key."""
        now = self._ts()
        with self._tx() as conn:
            rows = conn.execute(
                "WITH due AS (SELECT id FROM sms_outbox WHERE status = 'queued' AND next_attempt_at <= %(now)s "
                "AND (claimed_until IS NULL OR claimed_until <= %(now)s) ORDER BY created_at, seq "
                "LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE sms_outbox s SET claimed_until = %(until)s FROM due WHERE s.id = due.id "
                f"RETURNING s.seq, {', '.join('s.' + c for c in SMS_COLUMNS.split(', '))}",
                {"now": now, "until": self._ts(lease_s), "limit": max(0, limit)}).fetchall()
        rows.sort(key=lambda r: (r[9], r[0]))  # RETURNING has no order: oldest first, as SQLite
        return [sms_from_row(r[1:]) for r in rows]

    def mark_sms_sent(self, sms_id: str, attempts: int) -> None:
        self._settle(sms_id, "sent", attempts, None)

    def mark_sms_failed(self, sms_id: str, error: str, attempts: int) -> None:
        """Give up on a message; the number goes too (nothing more will be sent to it)."""
        self._settle(sms_id, "failed", attempts, error)

    def _settle(self, sms_id: str, status: str, attempts: int, error: str | None) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE sms_outbox SET status = %s, attempts = %s, number = NULL, "
                         "sent_at = COALESCE(%s, sent_at), last_error = COALESCE(%s, last_error), "
                         "claimed_until = NULL WHERE id = %s AND status = 'queued'",
                         (status, attempts, self._ts() if status == "sent" else None, clean(error), sms_id))

    def defer_sms(self, sms_id: str, seconds: float, attempts: int, error: str | None = None) -> None:
        """Leave a message queued and try again in ``seconds``."""
        with self._tx() as conn:
            conn.execute("UPDATE sms_outbox SET attempts = %s, next_attempt_at = %s, claimed_until = NULL, "
                         "last_error = COALESCE(%s, last_error) WHERE id = %s AND status = 'queued'",
                         (attempts, self._ts(seconds), clean(error), sms_id))

    def release_deferred_sms(self) -> int:
        """Make every queued message due now (a real gateway starts after the log gateway held them)."""
        now = self._ts()
        with self._tx() as conn:
            return conn.execute("UPDATE sms_outbox SET next_attempt_at = %s WHERE status = 'queued' "
                                "AND next_attempt_at > %s", (now, now)).rowcount

    def sms_for(self, conversation_id: str) -> list[SmsMessage]:
        with self._tx() as conn:
            rows = conn.execute(f"SELECT {SMS_COLUMNS} FROM sms_outbox WHERE conversation_id = %s "
                                "ORDER BY created_at, seq", (conversation_id,)).fetchall()
        return [sms_from_row(r) for r in rows]


def _configure(conn: psycopg.Connection) -> None:
    """Each pooled connection: our timestamps, and a bound on how long one statement may wait."""
    register_loaders(conn)
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    conn.commit()


def _version(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(max(version), 0) FROM schema_migrations").fetchone()[0])


def error_text(exc: psycopg.Error) -> str:
    """The server's or libpq's message on one line (libpq's may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__
