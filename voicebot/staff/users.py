"""Staff accounts: a user name, a tenant and an argon2id password hash, in ``var/staff.db``.

Why a file of its own rather than a table in the record store: the record store holds citizens'
conversations under a retention purge (``store.retention_days``) behind a backend interface
(``store.base.Store``, PostgreSQL later); staff credentials live by other rules (never purged,
not citizens' data) and would burden every backend and every purge, export and wipe of the
records. This small file is owned by the staff pages alone and created owner-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from voicebot.errors import VoicebotError
from voicebot.store.base import timestamp, utc_now

DEFAULT_PATH = "var/staff.db"  # relative to the project root
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters

SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_users (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
)"""
# logged-in sessions, so a restart (or another bot instance on this machine) keeps staff logged in;
# the cookie's id is stored only as its SHA-256, so this file never holds a usable session
SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS staff_sessions (
    id_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    seen REAL NOT NULL
)"""


@dataclasses.dataclass(frozen=True)
class StaffUser:
    name: str
    tenant: str


class StaffUsers:
    """The accounts file; safe to share between threads (one connection under a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # password hashes: owner only
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute(SCHEMA)
            self._db.execute(SESSIONS_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise VoicebotError(f"{self.path}: cannot open the staff accounts: {exc}") from None
        # verified against when the user does not exist, so a wrong name costs as long as a wrong password
        self._dummy = _HASHER.hash("not a password of anyone")

    @contextlib.contextmanager
    def _db_locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise VoicebotError(f"{self.path}: {exc}") from None

    def add(self, name: str, tenant: str, password: str) -> StaffUser:
        """Create or replace (a new password for) ``name``. Only the hash is stored."""
        name = name.strip().lower()
        if not NAME.fullmatch(name):
            raise VoicebotError(f"user name {name!r}: use a-z, 0-9, '.', '_', '-' (at most 64)")
        if not TENANT.fullmatch(tenant):
            raise VoicebotError(f"tenant {tenant!r}: use a-z, 0-9, '_', '-' (e.g. kff)")
        if len(password) < MIN_PASSWORD:
            raise VoicebotError(f"the password must have at least {MIN_PASSWORD} characters")
        hashed = _HASHER.hash(password)
        with self._db_locked() as db:
            db.execute("INSERT INTO staff_users (name, tenant, password_hash, created_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET tenant = excluded.tenant, "
                       "password_hash = excluded.password_hash",
                       (name, tenant, hashed, timestamp(utc_now())))
            db.execute("DELETE FROM staff_sessions WHERE name = ?", (name,))  # a new password logs out
        return StaffUser(name, tenant)

    def verify(self, name: str, password: str) -> StaffUser | None:
        """The user when ``password`` is theirs, else None (same work either way)."""
        name = name.strip().lower()
        with self._db_locked() as db:
            row = db.execute("SELECT tenant, password_hash FROM staff_users WHERE name = ?", (name,)).fetchone()
        hashed = row[1] if row else self._dummy
        try:
            _HASHER.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _HASHER.check_needs_rehash(hashed):  # parameters raised since: store a stronger hash
            with self._db_locked() as db:
                db.execute("UPDATE staff_users SET password_hash = ? WHERE name = ?", (_HASHER.hash(password), name))
        return StaffUser(name, row[0])

    def get(self, name: str) -> StaffUser | None:
        with self._db_locked() as db:
            row = db.execute("SELECT name, tenant FROM staff_users WHERE name = ?", (name,)).fetchone()
        return StaffUser(*row) if row else None

    # -- sessions (voicebot/staff/auth.py keeps them; here they outlive the process) -------------

    def save_session(self, session_id: str, name: str, csrf: str, created: float, seen: float) -> None:
        with self._db_locked() as db:
            db.execute("INSERT OR REPLACE INTO staff_sessions (id_hash, name, csrf, created, seen) "
                       "VALUES (?, ?, ?, ?, ?)", (_id_hash(session_id), name, csrf, created, seen))

    def load_session(self, session_id: str) -> tuple[StaffUser, str, float, float] | None:
        """(user as the accounts file has it now, csrf, created, seen), or None; a session of a
        user who is gone is no session."""
        with self._db_locked() as db:
            row = db.execute("SELECT u.name, u.tenant, s.csrf, s.created, s.seen FROM staff_sessions s "
                             "JOIN staff_users u ON u.name = s.name WHERE s.id_hash = ?",
                             (_id_hash(session_id),)).fetchone()
        return (StaffUser(row[0], row[1]), row[2], row[3], row[4]) if row else None

    def touch_session(self, session_id: str, seen: float) -> None:
        with self._db_locked() as db:
            db.execute("UPDATE staff_sessions SET seen = ? WHERE id_hash = ?", (seen, _id_hash(session_id)))

    def delete_session(self, session_id: str) -> None:
        with self._db_locked() as db:
            db.execute("DELETE FROM staff_sessions WHERE id_hash = ?", (_id_hash(session_id),))

    def purge_sessions(self, idle_before: float, created_before: float) -> None:
        with self._db_locked() as db:
            db.execute("DELETE FROM staff_sessions WHERE seen < ? OR created < ?", (idle_before, created_before))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
