"""``voicebot store backup`` / ``restore``: on real SQLite files while another thread writes, and a
real throw-away PostgreSQL cluster (tests/pg.py) through pg_dump and pg_restore."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from voicebot import cli
from voicebot.config import load_settings
from voicebot.store.backup import BackupError, backup_sqlite, processes_using, restore, restore_sqlite
from voicebot.store.base import Turn
from voicebot.store.sqlite import MIGRATIONS, SqliteStore

YES = lambda question: True  # noqa: E731 - the operator's answer


def site(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def converse(store, n: int, heard: str = "mit pas er væk 010203-1234") -> str:
    cid = store.start_conversation(channel="voice" if n % 2 else "chat", tenant="kff", caller_hash=f"h{n}",
                                   caller_tail="56")
    store.add_turn(cid, Turn(index=0, heard=heard, decision="answer", intent="pas", confidence=0.9,
                             said=["Du kan bestille et nyt pas."], timings={"asr_ms": n}))
    store.add_turn(cid, Turn(index=1, heard="[1]", decision="sms", intent="pas", timings={"match_ms": 1}))
    store.finish_conversation(cid, "resolved", survey=1 + n % 5, intents=["pas"])
    if n % 3 == 0:
        store.queue_sms(cid, "+4520123456", "Link: https://kk.dk/pas", "pas")
    return cid


def table_rows(path: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("conversations", "turns", "sms_outbox")}
    finally:
        db.close()


# -- SQLite ------------------------------------------------------------------------------------------


def test_sqlite_backup_while_the_bot_writes_is_consistent_and_restores(tmp_path):
    live = tmp_path / "var" / "voicebot.db"
    store = SqliteStore(live)
    long_story = "jeg har mistet mit pas og skal rejse på fredag " * 40  # ~2 KB a turn: a backup takes a while
    for n in range(400):
        converse(store, n, heard=long_story)
    stop, errors, written = threading.Event(), [], [400]

    def writer() -> None:  # the bot: conversations keep arriving from another thread
        try:
            while not stop.is_set():
                converse(store, written[0])
                written[0] += 1
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        backups = []
        for i in range(3):
            before = written[0]
            summary = backup_sqlite(live, tmp_path / f"b{i}.db")
            backups.append((before, summary, written[0]))
    finally:
        stop.set()
        thread.join()
    assert not errors  # the writer never waited past its busy timeout, never failed
    assert any(after > before for before, _, after in backups)  # it wrote while a backup ran
    for before, summary, after in backups:
        assert summary.file.stat().st_mode & 0o777 == 0o600  # personal data: owner only
        assert before <= summary.rows["conversations"] <= after + 1
        rows = table_rows(summary.file)
        assert len(rows["conversations"]) == summary.rows["conversations"]
        # one snapshot: every finished conversation in it has both turns, no turn is orphaned
        ids = {r[0] for r in rows["conversations"]}
        assert {t[0] for t in rows["turns"]} <= ids
        finished = {r[0] for r in rows["conversations"] if r[8] == "resolved"}
        assert all(sum(t[0] == cid for t in rows["turns"]) == 2 for cid in finished)
        db = sqlite3.connect(summary.file)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        db.close()
    assert not list(tmp_path.glob(".*tmp*")) and not list(tmp_path.glob("b*.db-*"))
    # a backup restored into a fresh path holds exactly what the backup holds
    fresh = tmp_path / "elsewhere" / "voicebot.db"
    restored = restore_sqlite(backups[1][1].file, fresh, YES, tmp_path / "run")
    assert table_rows(fresh) == table_rows(backups[1][1].file)
    assert restored.rows == backups[1][1].rows
    # and, the writer stopped, a last backup restores to the same records through the store
    final = backup_sqlite(live, tmp_path / "final.db")
    restore_sqlite(final.file, fresh, YES, tmp_path / "run")
    again = SqliteStore(fresh)
    try:
        assert again.recent(10_000) == store.recent(10_000)
        assert len(again.recent(10_000)) == written[0]
        assert "010203-1234" not in str(again.recent(1))  # redacted when written, still redacted
    finally:
        again.close()
        store.close()


def test_restore_replaces_the_store_and_its_stale_wal_and_keeps_the_owner(tmp_path):
    old = SqliteStore(tmp_path / "old" / "voicebot.db")
    for n in range(3):
        converse(old, n)
    old.close()
    backup = backup_sqlite(old.path, tmp_path / "backup.db")
    live = tmp_path / "var" / "voicebot.db"
    store = SqliteStore(live)
    converse(store, 99, heard="nyere samtale")
    store.close()
    # a WAL the old file left (a killed bot): it must not be replayed onto the restored pages
    live.with_name("voicebot.db-wal").write_bytes(b"stale wal of the replaced file")
    if os.geteuid() == 0:  # the service user owns the store; root restores it
        os.chown(live, 65534, 65534)
    summary = restore_sqlite(backup.file, live, YES, tmp_path / "run")
    assert sorted(p.name for p in live.parent.iterdir()) == ["voicebot.db"]  # no -wal, -shm or temporary file
    assert summary.rows["conversations"] == 3
    assert live.stat().st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        assert (live.stat().st_uid, live.stat().st_gid) == (65534, 65534)
    assert table_rows(live) == table_rows(backup.file)


def test_restore_is_refused_while_voicebot_serve_has_the_store_open(tmp_path):
    live = tmp_path / "var" / "voicebot.db"
    store = SqliteStore(live)
    converse(store, 1)
    backup = backup_sqlite(live, tmp_path / "backup.db")
    converse(store, 2)
    run = tmp_path / "var" / "run"
    run.mkdir()
    (run / "voicebot.pid").write_text(str(os.getpid()))  # "voicebot serve" is this live process
    assert processes_using(live, run) == [(run / "voicebot.pid", os.getpid())]
    with pytest.raises(BackupError, match=rf"in use by voicebot serve \(pid {os.getpid()}.*stop it first"):
        restore_sqlite(backup.file, live, YES, run)
    assert len(store.recent(10)) == 2  # untouched
    store.close()
    assert processes_using(live, run) == []  # the store closed: a restore may go ahead
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / "voicebot.pid").write_text(str(dead.pid))  # a stale pid file of a killed bot
    assert processes_using(live, run) == []
    assert restore_sqlite(backup.file, live, YES, run).rows["conversations"] == 1


def test_restore_checks_the_backup_and_asks_first(tmp_path):
    live = tmp_path / "var" / "voicebot.db"
    store = SqliteStore(live)
    converse(store, 1)
    store.close()
    run = tmp_path / "run"
    junk = tmp_path / "junk"
    junk.write_text("not a database")
    with pytest.raises(BackupError, match="not a backup of the record store"):
        restore_sqlite(junk, live, YES, run)
    dump = tmp_path / "pg.dump"
    dump.write_bytes(b"PGDMP\x01\x0e\x00rest of a pg_dump archive")
    with pytest.raises(BackupError, match="is a PostgreSQL dump .* but this store is sqlite"):
        restore_sqlite(dump, live, YES, run)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE notes (x)")
    other.close()
    with pytest.raises(BackupError, match="not a record store"):
        restore_sqlite(tmp_path / "other.db", live, YES, run)
    newer = backup_sqlite(live, tmp_path / "newer.db").file
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(BackupError, match="schema version 99 is newer than this program knows"):
        restore_sqlite(newer, live, YES, run)
    good = backup_sqlite(live, tmp_path / "good.db").file
    questions = []
    assert restore_sqlite(good, live, lambda q: questions.append(q) or False, run) is None
    assert questions == [f"Replace the records in {live} (1 conversations now) with the backup {good} "
                         f"(1 conversations, schema {len(MIGRATIONS)})?"]


def test_backup_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(BackupError, match="no record store there"):
        backup_sqlite(tmp_path / "var" / "voicebot.db", tmp_path / "b.db")
    live = tmp_path / "var" / "voicebot.db"
    SqliteStore(live).close()
    with pytest.raises(BackupError, match="no folder"):
        backup_sqlite(live, tmp_path / "missing" / "b.db")
    with pytest.raises(BackupError, match="is a folder"):
        backup_sqlite(live, tmp_path)
    with pytest.raises(BackupError, match="that is the store itself"):
        backup_sqlite(live, live)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(BackupError, match="cannot write there"):
            backup_sqlite(live, locked / "b.db")


def test_the_commands_back_up_and_restore(tmp_path, capsys, monkeypatch):
    config = site(tmp_path, f"store:\n  path: {tmp_path}/var/voicebot.db\n")
    store = SqliteStore(tmp_path / "var" / "voicebot.db")
    converse(store, 3)
    store.close()
    file = tmp_path / "backup.db"
    assert cli.main(["--config", str(config), "store", "backup", str(file)]) == 0
    out = capsys.readouterr().out
    assert f"written to {file}" in out and "conversations 1, sms_outbox 1, turns 2" in out
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # no terminal: no answer, nothing replaced
    assert cli.main(["--config", str(config), "store", "restore", str(file)]) == 1
    assert "add --yes" in capsys.readouterr().err
    assert cli.main(["--config", str(config), "store", "restore", str(file), "--yes"]) == 0
    assert f"restored {file} into sqlite" in capsys.readouterr().out
    assert cli.main(["--config", str(config), "store", "restore", str(tmp_path / "nothing"), "--yes"]) == 2
    assert "no such file" in capsys.readouterr().err


# -- PostgreSQL --------------------------------------------------------------------------------------


def test_postgres_backup_and_restore_round_trip(pg_schema, tmp_path, capsys, monkeypatch):
    from voicebot.store.postgres import PostgresStore

    config = site(tmp_path, f'store:\n  backend: postgresql\n  dsn: "{pg_schema.dsn()}"\n')
    monkeypatch.setenv("VOICEBOT_PG_PASSWORD", pg_schema.password)
    store = PostgresStore(pg_schema.dsn(), password=pg_schema.password)
    for n in range(6):
        converse(store, n)
    original = store.recent(100)
    commands: list[list[str]] = []
    real_run = subprocess.run

    def watching(cmd, *args, **kwargs):  # records the command lines, runs them for real
        commands.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", watching)
    file = tmp_path / "records.dump"
    assert cli.main(["--config", str(config), "store", "backup", str(file)]) == 0
    out, err = capsys.readouterr()
    assert "conversations 6, turns 12, sms_outbox 2" in out
    assert file.read_bytes().startswith(b"PGDMP") and file.stat().st_mode & 0o777 == 0o600
    # after the backup: one conversation deleted, another added
    pg_schema.admin(f"DELETE FROM conversations WHERE id = '{original[0].id}'")
    converse(store, 50)
    store.close()
    assert cli.main(["--config", str(config), "store", "restore", str(file), "--yes"]) == 0
    out2, err2 = capsys.readouterr()
    assert "conversations 6, turns 12, sms_outbox 2" in out2
    again = PostgresStore(pg_schema.dsn(), password=pg_schema.password)
    assert again.recent(100) == original
    again.close()
    # a lost database: the tables gone, the backup brings them back
    pg_schema.admin("DROP TABLE turns, sms_outbox, conversations, schema_migrations")
    assert cli.main(["--config", str(config), "store", "restore", str(file), "--yes"]) == 0
    capsys.readouterr()
    again = PostgresStore(pg_schema.dsn(), password=pg_schema.password)
    assert again.recent(100) == original
    again.close()
    # the password went to pg_dump/pg_restore in their environment, never on a command line or out
    assert {Path(c[0]).name for c in commands} == {"pg_dump", "pg_restore"}
    assert not any(pg_schema.password in " ".join(c) for c in commands)
    assert pg_schema.password not in out + err + out2 + err2


def test_postgres_refuses_a_backup_of_the_other_backend(pg_schema, tmp_path, monkeypatch):
    from voicebot.store.postgres import PostgresStore

    PostgresStore(pg_schema.dsn(), password=pg_schema.password).close()
    monkeypatch.setenv("VOICEBOT_PG_PASSWORD", pg_schema.password)
    settings = load_settings(site(tmp_path, f'store:\n  backend: postgresql\n  dsn: "{pg_schema.dsn()}"\n'))
    sqlite_store = SqliteStore(tmp_path / "var" / "voicebot.db")
    sqlite_store.close()
    sqlite_backup = backup_sqlite(sqlite_store.path, tmp_path / "b.db").file
    with pytest.raises(BackupError, match="is a SQLite backup, but this store is postgresql"):
        restore(settings, sqlite_backup, YES)
