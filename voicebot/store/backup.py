"""Backing up the record store and restoring it: ``voicebot store backup FILE`` / ``restore FILE``.

* SQLite: sqlite3's online backup API copies the live file in one step, under one read
  transaction: a consistent copy while the bot goes on writing (in WAL mode a reader never blocks
  a writer). The backup is a plain SQLite file (no ``-wal`` beside it) that ``sqlite3`` opens.
  A restore is refused while a ``voicebot serve`` has the store open (its pid file in var/run and
  the file among its open descriptors); otherwise the file is replaced in one rename, its stale
  ``-wal``/``-shm`` removed first, so they are never replayed onto the restored pages.
* PostgreSQL (``backup_pg.py``): ``pg_dump --format=custom`` of the store's tables and
  ``pg_restore --clean --if-exists --single-transaction``; the password reaches them in
  ``$PGPASSWORD`` only, never on a command line.

Records are personal data (redacted, but about citizens' calls): a backup is written mode 0600,
atomically (a temporary file beside the target, then rename), so a crash leaves the previous
backup or the new one, never half of one. A backup's schema version may be older than the
program's (the store upgrades it on restore), never newer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    from voicebot.config import Settings

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"  # pg_dump's custom format
BACKENDS = {"sqlite": "a SQLite backup", "postgresql": "a PostgreSQL dump (pg_dump)"}

#: asks the operator; the backup module never reads a terminal itself
Confirm = Callable[[str], bool]


class BackupError(VoicebotError):
    """A backup or restore could not be made; nothing was changed."""


@dataclasses.dataclass
class Summary:
    """What a backup holds or a restore put back, for the one line the command prints."""

    backend: str
    store: str                       # where the store is, without a password
    file: Path
    version: int                     # schema version
    rows: dict[str, int]             # rows per table
    seconds: float = 0.0

    def counts(self) -> str:
        return ", ".join(f"{table} {n}" for table, n in self.rows.items() if table != "schema_migrations")

    def size(self) -> str:
        try:
            return f"{self.file.stat().st_size / 1e6:.1f} MB"
        except OSError:
            return "?"


# -- the one entry point per direction ------------------------------------------------------------


def backup(settings: Settings, file: str | Path) -> Summary:
    """Back the configured store up to ``file`` (replacing it)."""
    from voicebot.store import store_config

    cfg = store_config(settings)
    if cfg.backend == "postgresql":
        from voicebot.store.backup_pg import backup_postgres

        return backup_postgres(cfg, Path(file))
    return backup_sqlite(settings.path(cfg.path), Path(file))


def restore(settings: Settings, file: str | Path, confirm: Confirm, run_dir: Path | None = None) -> Summary | None:
    """Put the backup ``file`` back into the configured store, after ``confirm`` says yes; None
    when it said no. ``run_dir``: where ``voicebot serve`` keeps its pid files (default var/run)."""
    from voicebot.store import store_config

    cfg = store_config(settings)
    if cfg.backend == "postgresql":
        from voicebot.store.backup_pg import restore_postgres

        return restore_postgres(cfg, Path(file), confirm)
    return restore_sqlite(Path(file), settings.path(cfg.path), confirm, run_dir or default_run_dir())


def default_run_dir() -> Path:
    from voicebot.commands.serve import PIDFILE

    return PIDFILE.parent


def backend_of(file: Path) -> str | None:
    """``sqlite`` or ``postgresql`` by the file's first bytes; None for anything else."""
    try:
        with open(file, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"{file}: no such file") from None
    except OSError as exc:
        raise BackupError(f"{file}: cannot read it: {exc.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    return None


def expect_backend(file: Path, backend: str) -> None:
    found = backend_of(file)
    if found == backend:
        return
    if found is None:
        raise BackupError(f"{file}: not a backup of the record store (neither a SQLite file nor a pg_dump archive)")
    raise BackupError(f"{file} is {BACKENDS[found]}, but this store is {backend} (store.backend): "
                      "a backup goes back into a store of the backend it came from")


def check_version(version: int, known: int, label: object) -> None:
    if version > known:
        raise BackupError(f"{label}: the schema version {version} is newer than this program "
                          f"knows ({known}): upgrade the bot before restoring it")
    if version < 1:
        raise BackupError(f"{label}: not a record store (no schema version)")


# -- files ------------------------------------------------------------------------------------------


def backup_target(file: Path, *live: Path) -> Path:
    """Where a backup may go: a file in an existing folder, not the store itself."""
    if file.is_dir():
        raise BackupError(f"{file}: is a folder; name the backup file")
    if not file.parent.is_dir():
        raise BackupError(f"{file}: no folder {file.parent}")
    resolved = file.resolve()
    for path in live:
        if resolved in {path.resolve(), path.resolve().with_name(path.name + "-wal")}:
            raise BackupError(f"{file}: that is the store itself; name another file")
    return file


@contextlib.contextmanager
def temp_beside(target: Path) -> Iterator[Path]:
    """A new empty file (mode 0600) in ``target``'s folder, removed unless renamed away; in the
    same folder so the final rename is atomic."""
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise BackupError(f"{target}: cannot write there: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(name + suffix).unlink(missing_ok=True)


def replace_atomically(tmp: Path, target: Path) -> None:
    """Make ``tmp`` ``target`` in one rename, durable: the data first, then the folder entry."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _own_like(path: Path, model: Path) -> None:
    """Give ``path`` the owner of ``model`` (the store it replaces, or the store's folder): a store
    restored by root must stay readable by the service user the bot runs as."""
    if os.geteuid() != 0:
        return  # only root can give files away; anyone else's files stay theirs
    st = model.stat()
    os.chown(path, st.st_uid, st.st_gid)


# -- SQLite ---------------------------------------------------------------------------------------


def _sqlite_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection, for a file nothing else uses (a backup being restored)."""
    try:
        return sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open it: {exc}") from None


def _sqlite_live(path: Path) -> sqlite3.Connection:
    """A connection to the live store that never writes (``query_only``). Not ``mode=ro``: in WAL
    mode that leaves a ``-wal``/``-shm`` of its own behind, which (made by root) the bot's user
    could not open; a read-write connection deletes them when it is the last one to close."""
    try:
        db = sqlite3.connect(path, timeout=10.0)
        db.execute("PRAGMA query_only = ON")
        return db
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open it: {exc}") from None


def _own_sidecars(db_path: Path) -> None:
    """A ``-wal``/``-shm`` this process left (the bot opened the store meanwhile, or a crash)
    belongs to the store's owner, as the store does."""
    for suffix in ("-wal", "-shm"):
        side = db_path.with_name(db_path.name + suffix)
        with contextlib.suppress(OSError):
            if side.exists() and side.stat().st_uid != db_path.stat().st_uid:
                _own_like(side, db_path)


def _sqlite_describe(db: sqlite3.Connection, label: Path) -> tuple[int, dict[str, int]]:
    """(schema version, rows per table), after SQLite's own consistency check."""
    from voicebot.store.sqlite import MIGRATIONS

    try:
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"{label}: the file is damaged ({check})")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite%' ORDER BY name")]
        rows = {t: int(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{label}: not a readable SQLite record store: {exc}") from None
    check_version(version, len(MIGRATIONS), label)
    missing = {"conversations", "turns", "sms_outbox"} - set(rows)
    if missing:
        raise BackupError(f"{label}: not a record store (no table {', '.join(sorted(missing))})")
    return version, rows


def backup_sqlite(db_path: Path, file: Path) -> Summary:
    """Copy the live SQLite store ``db_path`` to ``file``, consistent while the bot writes."""
    started = time.monotonic()
    if not db_path.is_file():
        raise BackupError(f"{db_path}: no record store there (store.path); nothing to back up")
    file = backup_target(file, db_path)
    src = _sqlite_live(db_path)
    try:
        with temp_beside(file) as tmp:
            dst = sqlite3.connect(tmp)
            try:
                # pages=-1: everything in one step, so one read transaction and one snapshot; in
                # steps a write between them would restart the copy
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                version, rows = _sqlite_describe(dst, db_path)
            except sqlite3.Error as exc:
                raise BackupError(f"{db_path}: backup failed: {exc}") from None
            finally:
                dst.close()
            replace_atomically(tmp, file)
    finally:
        src.close()
        _own_sidecars(db_path)
    return Summary("sqlite", f"sqlite {db_path}", file, version, rows, time.monotonic() - started)


def restore_sqlite(file: Path, db_path: Path, confirm: Confirm, run_dir: Path) -> Summary | None:
    """Replace the SQLite store ``db_path`` with the backup ``file``."""
    from voicebot.store.sqlite import SqliteStore

    started = time.monotonic()
    expect_backend(file, "sqlite")
    src = _sqlite_ro(file)
    try:
        version, rows = _sqlite_describe(src, file)
        users = processes_using(db_path, run_dir)
        if users:
            raise BackupError(f"{db_path} is in use by voicebot serve ({describe_users(users)}): stop it first "
                              "(systemctl stop kk-voicebot, or voicebot serve --stop)")
        now = _sqlite_now(db_path)
        question = (f"Replace the records in {db_path} ({now}) with the backup {file} "
                    f"({rows.get('conversations', 0)} conversations, schema {version})?")
        if not confirm(question):
            return None
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with temp_beside(db_path) as tmp:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst, pages=-1)
            except sqlite3.Error as exc:
                raise BackupError(f"{file}: restore failed: {exc}") from None
            finally:
                dst.close()
            SqliteStore(tmp).close()  # an older backup's schema is upgraded now, not by the bot
            check = sqlite3.connect(tmp)  # read-write: the last to close, it removes the -wal
            try:
                version, rows = _sqlite_describe(check, file)
            finally:
                check.close()
            _own_like(tmp, db_path if db_path.exists() else db_path.parent)
            # the old file's WAL must never be replayed onto the new pages: gone before the rename
            for suffix in ("-wal", "-shm"):
                db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
            replace_atomically(tmp, db_path)
    finally:
        src.close()
    return Summary("sqlite", f"sqlite {db_path}", file, version, rows, time.monotonic() - started)


def _sqlite_now(db_path: Path) -> str:
    """What the store holds now, for the question before it is replaced."""
    if not db_path.exists():
        return "no store there yet"
    try:
        db = _sqlite_live(db_path)
        try:
            return f"{db.execute('SELECT count(*) FROM conversations').fetchone()[0]} conversations now"
        finally:
            db.close()
    except (BackupError, sqlite3.Error):
        return "unreadable now"


# -- is the store in use? ----------------------------------------------------------------------------


def processes_using(db_path: Path, run_dir: Path) -> list[tuple[Path, int]]:
    """The live processes named in ``run_dir``'s pid files (``voicebot serve`` writes one per ARI
    app) that have ``db_path`` open; one whose descriptors we may not read counts as using it."""
    users = []
    target = db_path.resolve()
    for pidfile in sorted(run_dir.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid) and _has_open(pid, target):
            users.append((pidfile, pid))
    return users


def describe_users(users: list[tuple[Path, int]]) -> str:
    return ", ".join(f"pid {pid}, {pidfile}" for pidfile, pid in users)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # a stale pid file: the bot was killed
    except PermissionError:
        return True   # someone else's live process
    return True


def _has_open(pid: int, target: Path) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except PermissionError:
        return True   # cannot tell: assume the worst
    except OSError:
        return False  # gone meanwhile
    names = {str(target), str(target) + "-wal"}
    for fd in fds:
        try:
            if os.readlink(fd) in names:
                return True
        except OSError:
            continue
    return False
