"""The recorder: one per conversation, fed each event with the engine's actions; it alone writes
the conversation's record.

Persistence observes the dialogue (STYLE.md "Records by subscription"): the channels never write
records themselves. Each turn is written as it happens, so a crash loses at most the open turn.
A failing store never breaks a call: the error is logged with the conversation id and the
conversation goes on unrecorded. Methods block; async channels call them via ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from voicebot.dialogue.events import (Ask, ChatMessage, Digit, End, Hangup, OfferSms, QueueUnavailable, Say,
                                      SendSms, Silence, Transfer, Utterance)
from voicebot.metrics import count_conversation, count_turn
from voicebot.privacy import caller_hash, caller_tail, record_salt
from voicebot.store.base import Store, StoreError, Turn, timestamp, utc_now

log = logging.getLogger(__name__)

# Ask kinds -> the decision word recorded for the turn
_ASK_DECISIONS = {"clarify": "clarify", "confirm_transfer": "confirm", "confirm_topic": "confirm",
                  "rephrase": "rephrase", "survey": "survey", "menu": "menu"}


def heard(event: Any) -> str:
    """What the caller did, as the record shows it (the store redacts the text); ``None`` is the
    conversation's opening (the greeting, ``engine.start``)."""
    if event is None:
        return "(start)"
    if isinstance(event, QueueUnavailable):
        return "(ingen medarbejdere)"
    if isinstance(event, (Utterance, ChatMessage)):
        return event.text
    if isinstance(event, Digit):
        return f"[{event.digit}]"
    if isinstance(event, Silence):
        return "(stilhed)"
    if isinstance(event, Hangup):
        return "(lagt på)"
    return f"({type(event).__name__})"


def said(actions: list) -> list[str]:
    """The bot's own words in a turn."""
    out: list[str] = []
    for action in actions:
        if isinstance(action, (Say, Ask)):
            out.append(action.text)
        elif isinstance(action, OfferSms):
            out.append(action.prompt)
    return out


def decision(actions: list, survey_answered: bool = False) -> str:
    """One word for what the bot did, strongest first (a transfer outranks the words before it)."""
    if survey_answered:
        return "survey"
    kinds = [a.kind for a in actions if isinstance(a, Ask)]
    if any(isinstance(a, Transfer) for a in actions):
        return "transfer"
    for kind in ("clarify", "confirm_transfer", "confirm_topic"):
        if kind in kinds:
            return _ASK_DECISIONS[kind]
    if any(isinstance(a, Say) and a.article_id for a in actions):
        return "answer"
    if "rephrase" in kinds:
        return "rephrase"
    if any(isinstance(a, SendSms) for a in actions):
        return "sms"
    for kind in ("survey", "menu"):
        if kind in kinds:
            return _ASK_DECISIONS[kind]
    if any(isinstance(a, End) for a in actions):
        return "end"
    return "other"


def transfer_outcome(target: str) -> str:
    """``transferred:affald`` for the dialplan target ``dept-affald``; ``human-queue`` stays."""
    return f"transferred:{target.removeprefix('dept-')}"


class Recorder:
    """Writes one conversation's record: started here, a turn per event, finished by ``close``."""

    def __init__(self, store: Store, *, channel: str, tenant: str, caller: str | None = None,
                 ref: str | None = None, salt: bytes | None = None) -> None:
        self._store = store
        self._channel = channel
        self._id = uuid.uuid4().hex
        self._index = -1            # the latest written turn
        self._transfer: str | None = None
        self._survey: int | None = None
        self._closed = False
        self._ok = True
        hashed = tail = None
        if caller and any(c.isdigit() for c in caller):
            tail = caller_tail(caller)
            try:
                hashed = caller_hash(caller, salt if salt is not None else record_salt())
            except OSError as exc:  # an unwritable var/: record the call without the caller's hash
                log.error("record salt unavailable", extra={"conversation": self._id, "error": str(exc)})
        self._write("start", lambda: store.start_conversation(
            channel=channel, tenant=tenant, ref=ref, caller_hash=hashed, caller_tail=tail,
            conversation_id=self._id))

    @property
    def conversation_id(self) -> str:
        return self._id

    def turn(self, event: Any, actions: list, conv: Any, timings: dict[str, int] | None = None) -> None:
        """Record one event and the engine's actions for it."""
        if self._closed:
            return
        for action in actions:
            if isinstance(action, Transfer):
                self._transfer = action.target
        survey = getattr(conv, "survey", None)
        answered = survey is not None and survey != self._survey
        self._survey = survey
        is_text = isinstance(event, (Utterance, ChatMessage))
        result = getattr(conv, "last_result", None) if is_text else None
        intent = result.intent if result is not None else _article(actions)
        self._index += 1
        word = decision(actions, answered)
        if event is None and word == "other":
            word = "start"
        record = Turn(index=self._index, heard=heard(event), decision=word,
                      intent=intent, confidence=round(result.confidence, 3) if result is not None else None,
                      said=said(actions), timings=dict(timings or {}), at=timestamp(utc_now()))
        count_turn(self._channel, word, record.timings)
        self._write("turn", lambda: self._store.add_turn(self._id, record))

    def add_timing(self, **ms: int) -> None:
        """Add timings to the latest turn (``first_audio_ms`` is known only once playback started)."""
        if self._index >= 0 and ms:
            self._write("timing", lambda: self._store.add_timings(self._id, self._index, ms))

    def close(self, conv: Any, outcome: str | None = None) -> None:
        """Finish the record; ``outcome`` (e.g. "failed") overrides the derived one. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if outcome is None:
            state = getattr(conv, "outcome", None) or "open"
            if self._transfer is not None and state == "transferred":  # a transfer that really happened
                outcome = transfer_outcome(self._transfer)
            else:
                outcome = "abandoned" if state in ("open", "transferred") else state
        survey = getattr(conv, "survey", None)
        intents = list(getattr(conv, "intents", None) or [])
        # the platform answers across tenants: the record belongs to the tenant whose article answered
        tenant = getattr(conv, "answered_by", None)
        count_conversation(self._channel, outcome)
        self._write("finish", lambda: self._store.finish_conversation(self._id, outcome, survey, intents,
                                                                      tenant=tenant))

    def _write(self, what: str, op) -> None:
        if not self._ok:
            return
        try:
            op()
        except StoreError as exc:
            self._ok = what != "start"  # without its start row nothing else can land
            log.error("conversation record not written", extra={"conversation": self._id, "step": what,
                                                                 "error": str(exc)})


def _article(actions: list) -> str | None:
    for action in actions:
        if isinstance(action, (Say, SendSms, OfferSms)) and action.article_id:
            return action.article_id
    return None
