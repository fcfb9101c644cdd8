"""Backup and restore of the PostgreSQL store (``backup.py`` has the SQLite side and the shared
rules): ``pg_dump --format=custom`` of the store's tables, taken at the snapshot the row counts
come from, and ``pg_restore --clean --if-exists --single-transaction``, so a failed restore
leaves the old rows.

The DSN goes on the command line without a password (``store.dsn`` may not hold one); the
password goes to the child process only, in ``$PGPASSWORD``: never on a command line (``ps``
shows those), never printed. A dump holds the tables of one schema and goes back into that
schema (pg_restore cannot rename one), which the store's DSN must put first on its search path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from voicebot.errors import VoicebotError
from voicebot.store.backup import (BackupError, Confirm, Summary, backup_target, check_version, expect_backend,
                                   replace_atomically, temp_beside)
from voicebot.store.postgres import MIGRATIONS, PostgresStore, connect, error_text, safe_dsn

if TYPE_CHECKING:
    from voicebot.store import StoreConfig

PG_TIMEOUT_S = 3600  # a dump or restore of a large store may take a while; not forever


def find_pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore``: on PATH (Debian's wrapper picks a version), else the newest under
    /usr/lib/postgresql/*/bin. It must be at least as new as the server."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, reverse=True)
    if versions:
        return str(versions[0])
    raise BackupError(f"{name} not found on PATH or under /usr/lib/postgresql/*/bin: "
                      "apt-get install postgresql-client")


def login(cfg: StoreConfig) -> tuple[str, dict[str, str]]:
    """The DSN without a password, and the child processes' environment with it in $PGPASSWORD
    ($VOICEBOT_PG_PASSWORD, PG_PASSWORD in asterisk/secrets.env, or one a $VOICEBOT_PG_DSN
    carried); without one, libpq uses $PGPASSWORD or ~/.pgpass as usual."""
    from voicebot.config import secret

    try:
        params = conninfo_to_dict(cfg.postgres_dsn())
    except psycopg.Error:
        raise BackupError("store.dsn: not a libpq connection string") from None
    password = params.pop("password", None) or secret("PG_PASSWORD") or None
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**params), env


def _connect(dsn: str, env: dict[str, str]) -> psycopg.Connection:
    try:
        return connect(dsn, env.get("PGPASSWORD"), connect_timeout=10)
    except psycopg.Error as exc:
        raise BackupError(f"{safe_dsn(dsn)}: cannot connect: {error_text(exc)}") from None


def store_tables() -> list[str]:
    """The tables the store's migrations create, and its version table."""
    names = re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", "\n".join(MIGRATIONS))
    return ["schema_migrations", *dict.fromkeys(names)]


def _schema(conn: psycopg.Connection) -> str | None:
    """The schema holding the store's tables (the first on the DSN's search path that has them)."""
    row = conn.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.oid = to_regclass('schema_migrations')").fetchone()
    return row[0] if row else None


def _version(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(max(version), 0) FROM schema_migrations").fetchone()[0])


def _rows(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    present = {r[0] for r in conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON "
                                          "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                                          (schema,))}
    count = sql.SQL("SELECT count(*) FROM {}")
    return {t: int(conn.execute(count.format(sql.Identifier(schema, t))).fetchone()[0])
            for t in store_tables() if t in present}


def _pattern(name: str) -> str:
    """An identifier as a pg_dump pattern that matches exactly it (quoted: no wildcards)."""
    return '"' + name.replace('"', '""') + '"'


def _run(cmd: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish in {PG_TIMEOUT_S} s") from None
    if done.returncode:
        detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise BackupError(f"{what} failed: {detail}")
    return done.stdout


def backup_postgres(cfg: StoreConfig, file: Path) -> Summary:
    """``pg_dump`` the store's tables to ``file``, at the snapshot its row counts come from."""
    started = time.monotonic()
    file = backup_target(file)
    dsn, env = login(cfg)
    where = f"postgresql {safe_dsn(dsn)}"
    pg_dump = find_pg_tool("pg_dump")
    conn = _connect(dsn, env)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        schema = _schema(conn)
        if schema is None:
            raise BackupError(f"{where}: no record store there (no schema_migrations table on the search path)")
        version = _version(conn)
        check_version(version, len(MIGRATIONS), where)
        rows = _rows(conn, schema)
        # pg_dump reads the snapshot this transaction counted in: the counts are the dump's
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        with temp_beside(file) as tmp:
            _run([pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}", f"--file={tmp}",
                  *(f"--table={_pattern(schema)}.{_pattern(t)}" for t in rows), f"--dbname={dsn}"], env, "pg_dump")
            replace_atomically(tmp, file)
    except psycopg.Error as exc:
        raise BackupError(f"{where}: {error_text(exc)}") from None
    finally:
        conn.close()
    return Summary("postgresql", where, file, version, rows, time.monotonic() - started)


def _archive(pg_restore: str, file: Path, env: dict[str, str]) -> tuple[str, int]:
    """(schema, schema version) of a dump of the store, from its table of contents and its
    schema_migrations rows; a dump of anything else is refused."""
    listing = _run([pg_restore, "--list", str(file)], env, f"pg_restore --list {file}")
    tables = re.findall(r"^\d+; \d+ \d+ TABLE (?!DATA )(\S+) (\S+) ", listing, re.MULTILINE)
    schemas = {schema for schema, _ in tables}
    if len(schemas) != 1 or not {"schema_migrations", "conversations"} <= {name for _, name in tables}:
        raise BackupError(f"{file}: not a backup of the record store (its tables: "
                          f"{', '.join(sorted(f'{s}.{n}' for s, n in tables)) or 'none'})")
    data = _run([pg_restore, "--data-only", "--table=schema_migrations", "--file=-", str(file)], env,
                f"pg_restore {file}")
    versions = [int(line.split("\t")[0]) for line in _copy_rows(data)]
    return schemas.pop(), max(versions, default=0)


def _copy_rows(script: str) -> list[str]:
    """The data lines of the ``COPY ... FROM stdin`` block in a pg_restore SQL script."""
    rows, inside = [], False
    for line in script.splitlines():
        if line.startswith("COPY "):
            inside = True
        elif inside and line == "\\.":
            inside = False
        elif inside:
            rows.append(line)
    return rows


def restore_postgres(cfg: StoreConfig, file: Path, confirm: Confirm) -> Summary | None:
    """``pg_restore`` the dump ``file`` over the store's tables, in one transaction; None when
    ``confirm`` said no."""
    started = time.monotonic()
    expect_backend(file, "postgresql")
    dsn, env = login(cfg)
    where = f"postgresql {safe_dsn(dsn)}"
    pg_restore = find_pg_tool("pg_restore")
    archive_schema, version = _archive(pg_restore, file, env)
    check_version(version, len(MIGRATIONS), file)
    question = _question(dsn, env, where, file, archive_schema, version)
    if not confirm(question):
        return None
    _run([pg_restore, "--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--no-owner",
          "--no-password", f"--dbname={dsn}", str(file)], env, "pg_restore")
    try:  # an older backup's schema is upgraded now, not by the next bot to start
        PostgresStore(dsn, password=env.get("PGPASSWORD"), pool_min=0, pool_max=1).close()
    except VoicebotError as exc:
        raise BackupError(f"restored, but the store does not open: {exc}") from None
    conn = _connect(dsn, env)
    try:
        rows, version = _rows(conn, archive_schema), _version(conn)
    finally:
        conn.close()
    return Summary("postgresql", where, file, version, rows, time.monotonic() - started)


def _question(dsn: str, env: dict[str, str], where: str, file: Path, archive_schema: str, version: int) -> str:
    """Checks the dump goes where the store is, and asks; says how many other sessions are
    connected (bots on other machines have no pid file here to be refused by)."""
    conn = _connect(dsn, env)
    try:
        schema = _schema(conn)
        target = schema or conn.execute("SELECT current_schema()").fetchone()[0]
        if target != archive_schema:
            raise BackupError(f"{file} holds the tables of schema {archive_schema!r}; this store's are in "
                              f"{target!r} (the DSN's search_path): pg_restore puts them back where they were")
        now = f"{_rows(conn, schema).get('conversations', 0)} conversations now" if schema else "no store there yet"
        others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchone()[0]
    except psycopg.Error as exc:
        raise BackupError(f"{where}: {error_text(exc)}") from None
    finally:
        conn.close()
    question = f"Replace the records in {where} ({now}) with the backup {file} (schema {version})?"
    if others:
        question += (f" {others} other session(s) are connected to this database: stop every bot using it "
                     "first, or what they write meanwhile is lost.")
    return question
