"""A throw-away PostgreSQL cluster for tests: ``initdb`` and ``pg_ctl`` in a temporary folder,
listening on a Unix socket in that folder only (no TCP), fsync off. Debian's server binaries come
with `make setup` (package postgresql).

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user (or
``nobody``) and its folder is handed to that user. Logins need a password (scram), as in
production: a superuser for the fixtures, and an ordinary role ``voicebot`` that owns the test
database and each test's schema, so migrations are proven to need no superuser.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

PORT = 5432  # only names the socket file; the folder is ours alone
APP_ROLE = "voicebot"
DATABASE = "voicebot_test"


def find_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    override = os.environ.get("VOICEBOT_PG_BINDIR")
    candidates = [Path(override)] if override else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
        if p.parent.name.isdigit() else 0, reverse=True)
    for path in candidates:
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _server_user() -> str | None:
    """Who runs the server: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither user postgres nor nobody exists to run PostgreSQL")


class Cluster:
    """One running cluster with one test database; ``new_schema()`` gives each test its own schema."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="voicebot-pg-"))  # under /tmp: reachable by that user
        self.data = self.dir / "data"
        self.superuser_password = secrets.token_urlsafe(16)
        self.password = secrets.token_urlsafe(16)  # the app role's
        self._names = itertools.count(1)
        self._started = False

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.superuser_password + "\n")
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8",
                  "--no-sync")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{self.dir}'\nport = {PORT}\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 200\n")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-w", "-t", "60", "start")
        self._started = True
        self.admin(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.password}'", dbname="postgres")
        self.admin(f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}", dbname="postgres")

    def stop(self) -> None:
        if self._started:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, schema: str | None = None, user: str = APP_ROLE, options: str = "") -> str:
        """A libpq DSN for the test database without password (it comes from the environment or a
        keyword); ``schema`` is put first on the search path, so the store's tables land there."""
        if schema is not None:
            options = f"{options} -c search_path={schema}".strip()
        return f"host={self.dir} port={PORT} dbname={DATABASE} user={user}" + (
            f" options='{options}'" if options else "")

    def admin(self, sql: str, schema: str | None = None, dbname: str = DATABASE) -> list[tuple]:
        """Run one statement as the superuser, autocommit (CREATE DATABASE needs it)."""
        import psycopg

        dsn = self.dsn(schema, "postgres").replace(f"dbname={DATABASE}", f"dbname={dbname}")
        with psycopg.connect(dsn, password=self.superuser_password, autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def new_schema(self) -> str:
        """A fresh, empty schema owned by the app role (cheaper than a database per test)."""
        name = f"t{next(self._names)}"
        self.admin(f"CREATE SCHEMA {name} AUTHORIZATION {APP_ROLE}")
        return name

    def schema_files(self, schema: str) -> list[Path]:
        """The files holding one schema's tables, indexes and their TOAST tables, after a checkpoint
        wrote them out. The WAL is the cluster's, shared by every test: not included."""
        self.admin("CHECKPOINT")
        rels = self.admin(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = '{schema}' OR (n.nspname = 'pg_toast' AND c.relname ~ ('^pg_toast_(' || "
            f"(SELECT string_agg(t.oid::text, '|') FROM pg_class t JOIN pg_namespace tn "
            f"ON tn.oid = t.relnamespace WHERE tn.nspname = '{schema}') || ')(_index)?$'))")
        out: list[Path] = []
        for (rel,) in rels:
            if rel is None:  # views, sequences without storage
                continue
            base = self.data / rel
            out += [p for p in base.parent.iterdir()
                    if re.fullmatch(re.escape(base.name) + r"(_\w+)?(\.\d+)?", p.name)]
        return out
