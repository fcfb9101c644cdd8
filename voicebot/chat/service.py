"""The chat channel's logic: sessions around the dialogue engine, rendering actions as replies.

Knowledge, matcher and engine come from the ``DialogueRuntime`` the phone shares; its ``reload()``
swaps in new knowledge only when it loads and validates completely, so a broken edit never takes
the chat down. Every session leaves one record in the store (when one is given).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from voicebot.chat.limits import ChatBusy, parse_networks
from voicebot.chat.origins import check_patterns
from voicebot.chat.sessions import Session, SessionStore
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

MAX_BODY_BYTES = 8 * 1024  # a request body; bigger ones get 413 before they are read
MAX_MESSAGE_CHARS = 1000  # the most max_message_chars may be: even as \uXXXX escapes it fits the body


@dataclasses.dataclass
class ChatConfig:
    """The ``chat:`` section: message size, sessions and the limits that keep a flood harmless
    (see ``voicebot/chat/sessions.py`` and ``limits.py`` for why each rule is what it is)."""

    max_message_chars: int = 500
    max_sessions: int = 10000
    max_sessions_per_client: int = 50
    session_idle_seconds: float = 1800.0
    session_active_seconds: float = 300.0  # used this recently: never evicted for someone else
    rate_per_second: float = 2.0
    rate_burst: int = 10
    trusted_proxies: list[str] = dataclasses.field(default_factory=list)
    allowed_origins: list[str] = dataclasses.field(default_factory=list)  # sites whose pages may chat; []: any
    workers: int = 1
    max_waiting: int = 20
    wait_seconds: float = 2.0

    def validate(self) -> None:
        if not 10 <= self.max_message_chars <= MAX_MESSAGE_CHARS:
            raise ValueError(f"max_message_chars: must be between 10 and {MAX_MESSAGE_CHARS}")
        for key in ("max_sessions", "max_sessions_per_client", "rate_burst", "workers"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: must be at least 1")
        for key in ("session_idle_seconds", "rate_per_second", "wait_seconds"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key}: must be positive")
        if not 0 <= self.session_active_seconds <= self.session_idle_seconds:
            raise ValueError("session_active_seconds: must be between 0 and session_idle_seconds")
        if self.max_waiting < 0:
            raise ValueError("max_waiting: must be 0 or more")
        if self.workers > 8:
            raise ValueError("workers: at most 8 (the chat must not starve the phone's speech work)")
        parse_networks(self.trusted_proxies)
        check_patterns(self.allowed_origins)


def render(actions: list[Action]) -> dict[str, Any]:
    """Turn dialogue actions into the chat reply ``{text, link?, ask?, options?}`` (``ask``: the
    question's kind, e.g. "clarify", "survey", when the bot asked one)."""
    texts: list[str] = []
    reply: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Say):
            texts.append(action.text)
            if action.link:
                reply["link"] = action.link
        elif isinstance(action, Ask):
            texts.append(action.text)
            reply["ask"] = action.kind  # what the question is (a widget shows "survey" as a rating)
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
    """Sessions under server-issued ids; each keeps its ``Conversation`` (so follow-ups have
    context) and the recorder that writes its record. Knowledge, matcher and engine come from the
    shared runtime. Blocking throughout (matching, the store): the HTTP API calls it from the
    chat's own worker threads."""

    def __init__(self, settings: Settings, runtime: DialogueRuntime, store: Store | None = None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = store
        self.config = settings.section("chat", ChatConfig)
        self.tenant = settings.section("knowledge", KnowledgeConfig).tenant
        c = self.config
        self.sessions = SessionStore(c.max_sessions, c.max_sessions_per_client, c.session_idle_seconds,
                                     c.session_active_seconds)

    @property
    def kb(self) -> KnowledgeBase:
        return self.runtime.kb

    def reply(self, session_id: str | None, message: str, client: str = "local",
              tenant: str | None = None) -> dict[str, Any]:
        """Answer one message in session ``session_id``. No id, or one this server does not hold
        (never issued, expired, evicted, from before a restart), starts a new session under a new
        id: the result's ``session_id`` is the one to send next, and ``new_session`` says that the
        earlier context is gone. ``ChatBusy`` when the store is full of active sessions, or this
        session's previous message is still being answered after ``wait_seconds``."""
        session, new = self._open(session_id, client, tenant)
        engine = self.runtime.engine  # one consistent knowledge base for this turn, even during reload
        event = ChatMessage(message)
        if not session.lock.acquire(timeout=self.config.wait_seconds):
            raise ChatBusy("the previous message of this session is still being answered")
        try:
            started = time.perf_counter()
            actions = engine.handle(session.conversation, event)
            match_ms = int((time.perf_counter() - started) * 1000)
            if session.recorder is not None:
                session.recorder.turn(event, actions, session.conversation, {"match_ms": match_ms})
        finally:
            session.lock.release()
        if session.conversation.ended:  # a goodbye: the next message starts afresh
            if self.sessions.drop(session.id) is not None:
                self._close(session)
        says = [a for a in actions if isinstance(a, Say) and a.article_id]
        intent = says[0].article_id if says else "none"
        if intent == "none" and any(isinstance(a, Transfer) and a.reason == "offered" for a in actions):
            intent = session.conversation.last_intent or "none"  # "ja" to the article's offer
        result = session.conversation.last_result
        confidence = result.confidence if result is not None and result.intent == intent else \
            (1.0 if intent != "none" else 0.0)  # chosen from options or a follow-up: certain
        return {"session_id": session.id, "new_session": new, "reply": render(actions), "intent": intent,
                "confidence": confidence, "ended": session.conversation.ended}

    def _open(self, session_id: str | None, client: str, tenant: str | None) -> tuple[Session, bool]:
        """``tenant``: the widget's tenant (whose articles win a close call); it counts for a new session."""
        def new_session(sid: str, client_key: str, now: float) -> Session:
            conv = Conversation("chat", sid, tenant=tenant or "")
            return Session(sid, client_key, conv, now, self._recorder(tenant or self.tenant))

        opened = self.sessions.open(session_id, client, new_session)
        for old in opened.dropped:
            self._close(old)
        if opened.session is None:
            log.warning("chat sessions full of active conversations; new session refused",
                        extra={"sessions": len(self.sessions)})
            raise ChatBusy("every chat session is in use", retry_after=30.0)
        return opened.session, opened.new

    def _recorder(self, tenant: str) -> Recorder | None:
        if self.store is None:
            return None
        from voicebot.store.recorder import Recorder

        return Recorder(self.store, channel="chat", tenant=tenant)

    @staticmethod
    def _close(session: Session) -> None:
        if session.recorder is not None:
            with session.lock:
                session.recorder.close(session.conversation)

    def close_all(self) -> None:
        """Close every open session's record (on shutdown)."""
        for session in self.sessions.clear():
            self._close(session)

    def reload(self) -> tuple[bool, str]:
        return self.runtime.reload()


def build_chat_service(settings: Settings, runtime: DialogueRuntime | None = None,
                       store: Store | None = None) -> ChatService:
    """The chat on its own runtime unless one is shared (``voicebot serve`` shares the phone's)."""
    from voicebot.dialogue.runtime import build_runtime

    return ChatService(settings, runtime or build_runtime(settings), store)
