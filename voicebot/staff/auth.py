"""Sessions, CSRF tokens and the login rate limit of the staff pages.

Logged-in sessions are also kept in the staff accounts file (``var/staff.db``, the id only as a
hash), so a restart of the bot, or another bot instance on the same machine, keeps staff logged
in; a new password or a removed account ends them. Anonymous (login page) sessions stay in
memory. Times are wall-clock seconds, since they outlive the process.

Every visitor gets a session (anonymous until login) with its own CSRF token, so the login form
is protected too; logging in issues a new session id (no fixation). Each POST must carry the
session's token in the form field ``csrf``.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from voicebot.staff.users import StaffUser, StaffUsers

COOKIE = "staff_session"
ANONYMOUS_TTL = 30 * 60        # an unused login page's session
IDLE_TTL = 2 * 3600            # a logged-in session idle this long is gone
ABSOLUTE_TTL = 12 * 3600       # ... and any session after a working day
MAX_SESSIONS = 2000            # oldest dropped first (bounds memory against cookie-less floods)
TOUCH_EVERY = 60               # seconds: how often a used session's "seen" is written to the file


@dataclasses.dataclass
class Session:
    id: str
    csrf: str
    created: float
    seen: float
    user: StaffUser | None = None


class Sessions:
    def __init__(self, clock: Callable[[], float] = time.time, store: StaffUsers | None = None) -> None:
        self._clock = clock
        self._store = store  # logged-in sessions outlive the process there
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def new(self, user: StaffUser | None = None) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, user)
        if user is not None and self._store is not None:
            self._store.purge_sessions(now - IDLE_TTL, now - ABSOLUTE_TTL)
            self._store.save_session(session.id, user.name, session.csrf, now, now)
        self._remember(session)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_id.get(session_id)
        if self._store is not None and (session is None or session.user is not None):
            # logged in: the file is the truth (a logout or a new password on another instance, a
            # login from before a restart); an anonymous session lives only here
            session = self._load(session_id)
            if session is None:
                with self._lock:
                    self._by_id.pop(session_id, None)
                return None
        if session is None:
            return None
        idle = IDLE_TTL if session.user else ANONYMOUS_TTL
        if now - session.seen > idle or now - session.created > ABSOLUTE_TTL:
            self.drop(session_id)
            return None
        if session.user is not None and self._store is not None and now - session.seen >= TOUCH_EVERY:
            self._store.touch_session(session_id, now)  # idle time counts across instances too
            session.seen = now
        elif session.user is None or self._store is None:
            session.seen = now
        with self._lock:
            if session_id in self._by_id:
                self._by_id.move_to_end(session_id)
        return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._by_id.pop(session_id, None)
        if self._store is not None:
            self._store.delete_session(session_id)

    def _load(self, session_id: str) -> Session | None:
        if self._store is None:
            return None
        found = self._store.load_session(session_id)
        if found is None:
            return None
        user, csrf, created, seen = found
        session = Session(session_id, csrf, created, seen, user)
        self._remember(session)
        return session

    def _remember(self, session: Session) -> None:
        with self._lock:
            self._by_id[session.id] = session
            while len(self._by_id) > MAX_SESSIONS:
                self._by_id.popitem(last=False)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    return bool(session and token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())


class LoginLimiter:
    """At most ``limit`` failed logins per ``window`` seconds, counted per client address and per
    user name separately (a spread attack on one account and one client trying many accounts are
    both stopped). A success does not clear the counts: failures age out."""

    MAX_KEYS = 10000

    def __init__(self, limit: int = 5, window: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        while q and now - q[0] > self.window:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def blocked(self, client: str, user: str) -> bool:
        now = self._clock()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in (f"c:{client}", f"u:{user}"))

    def failed(self, client: str, user: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (f"c:{client}", f"u:{user}"):
                self._failures.setdefault(key, deque()).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.MAX_KEYS:
                self._failures.popitem(last=False)
