"""Read-only SQL access to the record store, for the code that counts with SQL (the monthly report,
the staff pages): ``open_readonly(read_source(settings))``.

Those queries are written once, in SQLite's dialect. On PostgreSQL ``PgReader`` runs them after
translating the few differences they use: ``?`` placeholders, ``json_each(x) j`` and ``GLOB``.
Anything else they need must be written portably (``COUNT(*) FILTER (WHERE ...)``, not ``TOTAL``).
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from voicebot.store.base import StoreError

if TYPE_CHECKING:
    from voicebot.config import Settings


class Cursor(Protocol):
    def fetchall(self) -> list[tuple]: ...

    def fetchone(self) -> tuple | None: ...

    def __iter__(self) -> Any: ...


class Reader(Protocol):
    """What the SQL readers use: ``sqlite3.Connection`` is one, ``PgReader`` another."""

    def execute(self, sql: str, params: Any = ()) -> Cursor: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class PgSource:
    """Where a PostgreSQL store is (the password is kept out of ``repr``)."""

    dsn: str
    password: str | None = dataclasses.field(default=None, repr=False)

    def __str__(self) -> str:
        from voicebot.store.postgres import safe_dsn

        return safe_dsn(self.dsn)


def read_source(settings: Settings) -> Path | PgSource:
    """The configured store as something ``open_readonly`` takes: a SQLite file or a PgSource."""
    from voicebot.config import secret
    from voicebot.store import store_config

    cfg = store_config(settings)
    if cfg.backend == "postgresql":
        return PgSource(cfg.postgres_dsn(), secret("PG_PASSWORD") or None)
    return settings.path(cfg.path)


def open_readonly(source: Path | PgSource) -> Reader:
    """A read-only connection; ``StoreError`` when there is no store yet or it cannot be read."""
    if isinstance(source, PgSource):
        return PgReader(source)
    if not source.is_file():
        raise StoreError(f"{source}: no record store (store.path); nothing has been recorded yet?")
    try:
        db = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
        db.execute("SELECT 1 FROM conversations LIMIT 1")
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: cannot read the record store: {exc}") from None
    return db


class PgReader:
    """One read-only PostgreSQL session that takes SQLite-dialect SQL (see ``to_postgres``)."""

    def __init__(self, source: PgSource) -> None:
        import psycopg

        from voicebot.store.postgres import connect, error_text

        self._error, self._text = psycopg.Error, error_text
        self.where = str(source)
        try:
            self._conn = connect(source.dsn, source.password, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"{self.where}: cannot read the record store: {error_text(exc)}") from None
        try:
            self._conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            self._conn.execute("SELECT 1 FROM conversations LIMIT 1")
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(f"{self.where}: cannot read the record store: {error_text(exc)}") from None

    def execute(self, sql: str, params: Any = ()) -> Cursor:
        try:
            return self._conn.execute(to_postgres(sql), tuple(params))
        except self._error as exc:
            raise StoreError(f"{self.where}: {self._text(exc)}") from None

    def close(self) -> None:
        self._conn.close()


# -- SQLite's dialect -> PostgreSQL's ----------------------------------------------------------------

_LITERAL = re.compile(r"'(?:[^']|'')*'")
_JSON_EACH = re.compile(r"\bjson_each\(([^()]+)\)\s+(?:AS\s+)?(\w+)", re.IGNORECASE)
_GLOB = re.compile(r"\b(NOT\s+)?GLOB\s+'((?:[^']|'')*)'", re.IGNORECASE)


def to_postgres(sql: str) -> str:
    """Translate the SQLite SQL our readers use into PostgreSQL's, for psycopg (``%s`` placeholders,
    ``%`` doubled). ``json_each(x) j`` (a JSON array's elements as ``j.value``) becomes
    ``jsonb_array_elements_text``; ``GLOB 'p'`` a regular expression match."""
    sql = _JSON_EACH.sub(r"jsonb_array_elements_text(\1) AS \2(value)", sql)
    sql = _GLOB.sub(lambda m: f"{'!~' if m.group(1) else '~'} '{glob_to_regex(m.group(2))}'", sql)
    out, last = [], 0
    for literal in _LITERAL.finditer(sql):  # placeholders only outside string literals
        out += [sql[last:literal.start()].replace("?", "\0"), literal.group()]
        last = literal.end()
    out.append(sql[last:].replace("?", "\0"))
    return "".join(out).replace("%", "%%").replace("\0", "%s")


def glob_to_regex(pattern: str) -> str:
    """A SQLite GLOB pattern (``*``, ``?``, ``[...]``, ``[^...]``; case-sensitive) as an anchored
    PostgreSQL regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)  # a "]" right after "[" (or "[^") is a member
            if pattern[i + 1] == "^" and "]" in pattern[i + 3:]:
                end = pattern.index("]", i + 3)
            out.append(_char_class(pattern[i + 1:end]))
            i = end
        else:
            out.append(re.escape(c) if not c.isalnum() else c)
        i += 1
    return "".join(out) + "$"


def _char_class(body: str) -> str:
    negate = body.startswith("^")
    body = body[1:] if negate else body
    members = []
    for j, c in enumerate(body):
        is_range = c == "-" and 0 < j < len(body) - 1
        members.append(c if c.isalnum() or is_range else "\\" + c)
    return "[" + ("^" if negate else "") + "".join(members) + "]"
