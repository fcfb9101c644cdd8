"""What a conversation store keeps, and the interface every backend implements.

SQLite is the default (one machine); PostgreSQL (``postgres.py``) serves several bot instances
sharing one database. Both implement the ``Store`` protocol with the same behaviour. Records hold
no audio, no full transcript, no phone number and no CPR number: texts are redacted by the backend
before they are written, whatever the caller did.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Protocol

from voicebot.errors import VoicebotError
from voicebot.privacy import redact

CHANNELS = ("voice", "chat")
SMS_STATUSES = ("queued", "sent", "failed")


class StoreError(VoicebotError):
    """The record store failed (disk, lock, schema); a call must go on without its record."""

    retryable = True


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def timestamp(when: dt.datetime) -> str:
    """UTC ISO 8601 with milliseconds: one fixed width, so text order is time order."""
    when = when.astimezone(dt.timezone.utc)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond // 1000:03d}Z"


def clean(text: str | None) -> str | None:
    """Redacted text, or None: every text a backend writes goes through here or ``redact``."""
    return None if text is None else redact(text)


def clean_timings(timings: dict[str, int] | None) -> dict[str, int]:
    return {str(k): int(v) for k, v in (timings or {}).items()}


@dataclasses.dataclass
class Turn:
    """One event of the caller and what the bot did about it."""

    index: int
    heard: str                       # redacted text, "[1]" for a key press, "(stilhed)" for silence
    decision: str                    # answer, clarify, confirm, transfer, rephrase, sms, survey, end...
    intent: str | None = None
    confidence: float | None = None
    said: list[str] = dataclasses.field(default_factory=list)
    timings: dict[str, int] = dataclasses.field(default_factory=dict)  # milliseconds by name
    at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ConversationRecord:
    id: str
    channel: str
    tenant: str
    started_at: str
    ref: str | None = None
    ended_at: str | None = None
    caller_hash: str | None = None
    caller_tail: str | None = None
    outcome: str | None = None       # resolved, transferred:<target>, abandoned, failed; None while live
    survey: int | None = None
    intents: list[str] = dataclasses.field(default_factory=list)
    turns: list[Turn] = dataclasses.field(default_factory=list)
    staff_reached_at: str | None = None  # when an agent answered the call handed back (AMI AgentConnect)
    staff_queue: str | None = None       # the Asterisk queue whose agent answered it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SmsMessage:
    """One outbox row. ``number`` is only there until the message is sent or given up."""

    id: str
    conversation_id: str | None
    text: str
    idempotency_key: str
    created_at: str
    status: str = "queued"
    number: str | None = dataclasses.field(default=None, repr=False)
    article_id: str | None = None
    attempts: int = 0                # delivery attempts made so far (a gateway adds its retries)
    sent_at: str | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON for ops: the number is left out."""
        out = dataclasses.asdict(self)
        del out["number"]
        return out


# the outbox columns both backends select, in ``sms_from_row``'s order
SMS_COLUMNS = ("id, conversation_id, number, text, article_id, status, attempts, idempotency_key, "
               "created_at, sent_at, last_error")


# the columns both backends select for a record, in the order conversation_from_row reads them
CONVERSATION_COLUMNS = ("id, ref, channel, tenant, started_at, ended_at, caller_hash, caller_tail, outcome, "
                        "survey, intents, staff_reached_at, staff_queue")


def conversation_from_row(r: tuple | list, intents: list[str]) -> ConversationRecord:
    """A record from a row of CONVERSATION_COLUMNS; ``intents`` already decoded (JSON text or jsonb)."""
    return ConversationRecord(id=r[0], ref=r[1], channel=r[2], tenant=r[3], started_at=r[4], ended_at=r[5],
                              caller_hash=r[6], caller_tail=r[7], outcome=r[8], survey=r[9], intents=intents,
                              staff_reached_at=r[11], staff_queue=r[12])


def sms_from_row(r: tuple | list) -> SmsMessage:
    return SmsMessage(id=r[0], conversation_id=r[1], number=r[2], text=r[3], article_id=r[4], status=r[5],
                      attempts=r[6], idempotency_key=r[7], created_at=r[8], sent_at=r[9], last_error=r[10])


class Store(Protocol):
    """Conversation records and the SMS outbox. Methods are blocking: call them from a worker
    thread (``asyncio.to_thread``) in async code. Backends must be safe to use from several threads."""

    def start_conversation(self, *, channel: str, tenant: str, ref: str | None = None,
                           caller_hash: str | None = None, caller_tail: str | None = None,
                           conversation_id: str | None = None) -> str: ...

    def add_turn(self, conversation_id: str, turn: Turn) -> None: ...

    def add_timings(self, conversation_id: str, index: int, timings: dict[str, int]) -> None: ...

    def finish_conversation(self, conversation_id: str, outcome: str, survey: int | None = None,
                            intents: list[str] | None = None, *, tenant: str | None = None) -> None:
        """``tenant``: the tenant that answered, when not the one the conversation came in on."""
        ...

    def mark_reached_staff(self, conversation_id: str, queue: str | None = None) -> bool:
        """An agent answered the call after the bot handed it back: set ``staff_reached_at`` (and
        the queue) once; a later answer (a second agent) keeps the first. False when there is no
        such conversation or it was marked already. Nothing about the caller or agent is stored."""
        ...

    def get(self, conversation_id: str) -> ConversationRecord | None: ...

    def by_ref(self, ref: str) -> list[ConversationRecord]: ...

    def recent(self, n: int = 20) -> list[ConversationRecord]: ...

    def purge(self, older_than_days: float) -> int: ...

    def queue_sms(self, conversation_id: str | None, number: str, text: str,
                  article_id: str | None = None) -> SmsMessage: ...

    def claim_sms(self, limit: int = 10, lease_s: float = 60.0) -> list[SmsMessage]: ...

    def mark_sms_sent(self, sms_id: str, attempts: int) -> None: ...

    def mark_sms_failed(self, sms_id: str, error: str, attempts: int) -> None: ...

    def defer_sms(self, sms_id: str, seconds: float, attempts: int, error: str | None = None) -> None: ...

    def release_deferred_sms(self) -> int: ...

    def sms_for(self, conversation_id: str) -> list[SmsMessage]: ...

    def close(self) -> None: ...
