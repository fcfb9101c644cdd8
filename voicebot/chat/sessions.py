"""The chat's session store: server-issued ids, bounded in size, per client and in idle time.

Why these rules:

* Ids are issued here (``secrets.token_urlsafe``), never taken from the client. An id the store
  does not hold (made up, expired, evicted, or from before a restart) starts a fresh session under
  a new id, so a flood of invented ids creates nothing under those ids and a citizen whose
  session expired simply carries on in a new one.
* A client (one address) holds at most ``per_client`` sessions; its next new session replaces its
  own least recently used one. A flood from one address churns only its own sessions.
* When the store is full, only a session idle for ``active_seconds`` may make room. If even the
  least recently used one is more recent than that, the new session is refused (the API answers
  429 "busy"): refusing a newcomer is better than cutting off a citizen in mid-conversation.
* Sessions idle longer than ``idle_seconds`` expire; they are swept on every access, oldest first.

Thread-safe: the chat's worker threads share one store. Sessions that leave the store are handed
back to the caller, who closes their records outside the store's lock.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

ID_BYTES = 16  # 22 URL-safe characters, 128 bits: not guessable


@dataclasses.dataclass
class Session:
    id: str
    client: str
    conversation: Any  # voicebot.dialogue.Conversation
    seen: float
    recorder: Any = None  # voicebot.store.recorder.Recorder, when a store is configured
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # one turn at a time


@dataclasses.dataclass
class Opened:
    """What ``SessionStore.open`` did: ``session`` is None when the store is full of active sessions."""

    session: Session | None
    new: bool
    dropped: list[Session]  # expired or evicted: the caller closes their records


class SessionStore:
    def __init__(self, max_sessions: int, per_client: int, idle_seconds: float, active_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_sessions = max_sessions
        self.per_client = per_client
        self.idle_seconds = idle_seconds
        self.active_seconds = active_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()  # LRU first
        self._by_client: dict[str, collections.OrderedDict[str, None]] = {}  # per client, LRU first

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, session_id: str | None, client: str, new: Callable[[str, str, float], Session]) -> Opened:
        """The live session ``session_id``, else a new one for ``client`` made by
        ``new(id, client, now)`` under a fresh server-issued id."""
        with self._lock:
            now = self.clock()
            dropped = self._expire(now)
            session = self._sessions.get(session_id) if session_id else None
            if session is not None:
                self._touch(session, now)
                return Opened(session, False, dropped)
            room = self._make_room(client, now)
            if room is None:
                return Opened(None, True, dropped)
            dropped.extend(room)
            session = new(self._new_id(), client, now)
            self._sessions[session.id] = session
            self._by_client.setdefault(client, collections.OrderedDict())[session.id] = None
            return Opened(session, True, dropped)

    def drop(self, session_id: str) -> Session | None:
        with self._lock:
            return self._remove(session_id) if session_id in self._sessions else None

    def clear(self) -> list[Session]:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._by_client.clear()
            return sessions

    def count(self, client: str) -> int:
        return len(self._by_client.get(client, ()))

    # ---- under the lock ---------------------------------------------------------------------

    def _expire(self, now: float) -> list[Session]:
        out = []
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.seen <= self.idle_seconds:
                break
            out.append(self._remove(oldest.id))
        return out

    def _make_room(self, client: str, now: float) -> list[Session] | None:
        """Sessions to evict for one more of ``client``'s, or None when none may go."""
        own = self._by_client.get(client)
        if own is not None and len(own) >= self.per_client:
            return [self._remove(next(iter(own)))]  # the client's own least recently used
        if len(self._sessions) < self.max_sessions:
            return []
        oldest = next(iter(self._sessions.values()))
        if now - oldest.seen < self.active_seconds:
            return None  # everyone is mid-conversation: refuse the newcomer
        return [self._remove(oldest.id)]

    def _touch(self, session: Session, now: float) -> None:
        session.seen = now
        self._sessions.move_to_end(session.id)
        self._by_client[session.client].move_to_end(session.id)

    def _remove(self, session_id: str) -> Session:
        session = self._sessions.pop(session_id)
        own = self._by_client[session.client]
        del own[session_id]
        if not own:
            del self._by_client[session.client]
        return session

    def _new_id(self) -> str:
        while True:
            session_id = secrets.token_urlsafe(ID_BYTES)
            if session_id not in self._sessions:
                return session_id
