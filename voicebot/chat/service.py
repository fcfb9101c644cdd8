"""The chat channel's logic: sessions around the dialogue engine, rendering actions as replies.

Knowledge, matcher and engine come from the ``DialogueRuntime`` the phone shares; its ``reload()``
swaps in new knowledge only when it loads and validates completely, so a broken edit never takes
the chat down. Every session leaves one record in the store (when one is given).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from voicebot.dialogue import Ask, ChatMessage, Conversation, OfferSms, Say, SendSms, Transfer
from voicebot.knowledge.departments import KnowledgeConfig

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.dialogue import Action
    from voicebot.dialogue.runtime import DialogueRuntime
    from voicebot.knowledge import KnowledgeBase
    from voicebot.store import Store
    from voicebot.store.recorder import Recorder

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
    recorder: Recorder | None = None
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
    """Sessions keyed by id; each keeps its ``Conversation`` (so follow-ups have context) and the
    recorder that writes its record. Knowledge, matcher and engine come from the shared runtime."""

    def __init__(self, settings: Settings, runtime: DialogueRuntime, store: Store | None = None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = store
        self.config = settings.section("chat", ChatConfig)
        self.tenant = settings.section("knowledge", KnowledgeConfig).tenant
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, _Session] = collections.OrderedDict()

    @property
    def kb(self) -> KnowledgeBase:
        return self.runtime.kb

    def reply(self, session_id: str | None, message: str) -> dict[str, Any]:
        """Answer one message; creates the session when ``session_id`` is new or missing.

        Blocking (matching and the store): the HTTP handler runs it in a worker thread."""
        session_id = session_id or secrets.token_urlsafe(12)
        session = self._session(session_id)
        engine = self.runtime.engine  # one consistent knowledge base for this turn, even during reload
        event = ChatMessage(message)
        with session.lock:
            started = time.perf_counter()
            actions = engine.handle(session.conversation, event)
            match_ms = int((time.perf_counter() - started) * 1000)
            if session.recorder is not None:
                session.recorder.turn(event, actions, session.conversation, {"match_ms": match_ms})
        if session.conversation.ended:  # a goodbye: the next message starts afresh
            with self._lock:
                self._sessions.pop(session_id, None)
            self._close(session)
        says = [a for a in actions if isinstance(a, Say) and a.article_id]
        intent = says[0].article_id if says else "none"
        if intent == "none" and any(isinstance(a, Transfer) and a.reason == "offered" for a in actions):
            intent = session.conversation.last_intent or "none"  # "ja" to the article's offer
        result = session.conversation.last_result
        confidence = result.confidence if result is not None and result.intent == intent else \
            (1.0 if intent != "none" else 0.0)  # chosen from options or a follow-up: certain
        return {"session_id": session_id, "reply": render(actions), "intent": intent,
                "confidence": confidence, "ended": session.conversation.ended}

    def _session(self, session_id: str) -> _Session:
        now = time.monotonic()
        stale: list[_Session] = []
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None and now - session.seen > self.config.session_idle_seconds:
                stale.append(session)
                session = None
            if session is None:
                session = _Session(Conversation("chat", session_id), now, self._recorder(session_id))
            session.seen = now
            self._sessions[session_id] = session
            while len(self._sessions) > self.config.max_sessions:
                stale.append(self._sessions.popitem(last=False)[1])
        for old in stale:
            self._close(old)
        return session

    def _recorder(self, session_id: str) -> Recorder | None:
        if self.store is None:
            return None
        from voicebot.store.recorder import Recorder

        return Recorder(self.store, channel="chat", tenant=self.tenant)

    @staticmethod
    def _close(session: _Session) -> None:
        if session.recorder is not None:
            with session.lock:
                session.recorder.close(session.conversation)

    def close_all(self) -> None:
        """Close every open session's record (on shutdown)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            self._close(session)

    def reload(self) -> tuple[bool, str]:
        return self.runtime.reload()


def build_chat_service(settings: Settings, runtime: DialogueRuntime | None = None,
                       store: Store | None = None) -> ChatService:
    """The chat on its own runtime unless one is shared (``voicebot serve`` shares the phone's)."""
    from voicebot.dialogue.runtime import build_runtime

    return ChatService(settings, runtime or build_runtime(settings), store)
