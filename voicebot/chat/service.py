"""The chat channel's logic: sessions around the dialogue engine, rendering actions as replies.

Knowledge and the matcher are loaded once; ``reload()`` swaps in new knowledge only when it loads
and validates completely, so a broken edit never takes the chat down.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from voicebot.dialogue import (Ask, ChatMessage, Conversation, DialogueEngine, OfferSms, Say, SendSms,
                               Transfer)
from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.dialogue import Action
    from voicebot.knowledge import KnowledgeBase
    from voicebot.nlu import IntentMatcher

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ChatConfig:
    """The ``chat:`` section."""

    max_message_chars: int = 500
    max_sessions: int = 10000
    session_idle_seconds: float = 1800.0

    def validate(self) -> None:
        if self.max_message_chars < 10:
            raise ValueError("max_message_chars: must be at least 10")
        if self.max_sessions < 1:
            raise ValueError("max_sessions: must be at least 1")


@dataclasses.dataclass
class _Session:
    conversation: Conversation
    seen: float
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # one turn at a time


def render(actions: list[Action]) -> dict[str, Any]:
    """Turn dialogue actions into the chat reply ``{text, link?, options?}``."""
    texts: list[str] = []
    reply: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Say):
            texts.append(action.text)
            if action.link:
                reply["link"] = action.link
        elif isinstance(action, Ask):
            texts.append(action.text)
            if action.options:
                reply["options"] = [o.label for o in action.options]
        elif isinstance(action, Transfer):
            texts.append(_contact(action))
            if action.link:
                reply.setdefault("link", action.link)
        elif isinstance(action, (OfferSms, SendSms)):
            pass  # SMS belongs to the phone channel; the chat shows the link instead
    return {"text": "\n\n".join(t for t in texts if t), **reply}


def _contact(t: Transfer) -> str:
    phone = f" på telefon {t.phone}" if t.phone else ""
    hours = f" ({t.hours})" if t.hours else ""
    where = f". Se mere på {t.link}" if t.link and not t.phone else ""
    return f"Du kan kontakte {t.name}{phone}{hours}{where}."


class ChatService:
    """Sessions keyed by id; each keeps its ``Conversation`` so follow-ups have context."""

    def __init__(self, settings: Settings, kb: KnowledgeBase, matcher: IntentMatcher) -> None:
        self.settings = settings
        self.config = settings.section("chat", ChatConfig)
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, _Session] = collections.OrderedDict()
        self._install(kb, matcher)

    def _install(self, kb: KnowledgeBase, matcher: IntentMatcher) -> None:
        from voicebot.dialogue import DialogueTexts

        self.kb, self.matcher = kb, matcher
        self.engine = DialogueEngine(kb, matcher, texts=self.settings.section("dialogue", DialogueTexts))

    def reply(self, session_id: str | None, message: str) -> dict[str, Any]:
        """Answer one message; creates the session when ``session_id`` is new or missing."""
        session_id = session_id or secrets.token_urlsafe(12)
        session = self._session(session_id)
        engine = self.engine  # one consistent knowledge base for this turn, even during reload
        with session.lock:
            actions = engine.handle(session.conversation, ChatMessage(message))
        if session.conversation.ended:  # a goodbye: the next message starts afresh
            with self._lock:
                self._sessions.pop(session_id, None)
        says = [a for a in actions if isinstance(a, Say) and a.article_id]
        intent = says[0].article_id if says else "none"
        if intent == "none" and any(isinstance(a, Transfer) and a.reason == "offered" for a in actions):
            intent = session.conversation.last_intent or "none"  # "ja" to the article's offer
        result = session.conversation.last_result
        confidence = result.confidence if result is not None and result.intent == intent else \
            (1.0 if intent != "none" else 0.0)  # chosen from options or a follow-up: certain
        return {"session_id": session_id, "reply": render(actions), "intent": intent,
                "confidence": confidence}

    def _session(self, session_id: str) -> _Session:
        now = time.monotonic()
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None or now - session.seen > self.config.session_idle_seconds:
                session = _Session(Conversation("chat", session_id), now)
            session.seen = now
            self._sessions[session_id] = session
            while len(self._sessions) > self.config.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def reload(self) -> tuple[bool, str]:
        """Reload knowledge from disk; on any error keep serving the old one.

        Returns (ok, message); the serve command's SIGHUP handler logs the message.
        """
        from voicebot.knowledge import load_for_settings
        from voicebot.nlu import matcher_for_settings

        try:
            kb = load_for_settings(self.settings)
            matcher = matcher_for_settings(self.settings, kb, self.matcher.embeddings.embedder
                                           if self.matcher.embeddings else None)
        except VoicebotError as exc:
            log.error("knowledge reload rejected, keeping the previous knowledge", extra={"error": str(exc)})
            return False, str(exc)
        self._install(kb, matcher)
        log.info("knowledge reloaded", extra={"articles": len(kb.articles)})
        return True, f"{len(kb.articles)} articles loaded"


def build_chat_service(settings: Settings) -> ChatService:
    """Load knowledge and the matcher once (the embedding model loads here, ~1 s when cached)."""
    from voicebot.knowledge import load_for_settings
    from voicebot.nlu import matcher_for_settings

    kb = load_for_settings(settings)
    for warning in kb.warnings:
        log.warning(warning)
    return ChatService(settings, kb, matcher_for_settings(settings, kb))
