"""``voicebot store purge | backup FILE | restore FILE``: retention, backups and restoring one."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("store", help="maintain the conversation record store")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    purge = sub.add_parser("purge", help="delete records and outbox messages older than the retention")
    purge.add_argument("--days", type=float, metavar="N",
                       help="keep this many days (default: store.retention_days)")
    purge.set_defaults(func=run_purge)
    backup = sub.add_parser("backup", help="copy the store to FILE while the bot runs (SQLite: online "
                            "backup; PostgreSQL: pg_dump); FILE is written mode 600")
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(func=run_backup)
    restore = sub.add_parser("restore", help="replace the store's records with the backup FILE "
                             "(refused while voicebot serve has the SQLite store open)")
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--yes", action="store_true", help="do not ask before replacing the records")
    restore.set_defaults(func=run_restore)


def run_purge(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.store import open_store, store_config

    settings = load_settings(args.config)
    days = args.days if args.days is not None else store_config(settings).retention_days
    if days < 0:
        print("voicebot: error: --days must not be negative", file=sys.stderr)
        return 2
    store = open_store(settings)
    try:
        deleted = store.purge(days)
    finally:
        store.close()
    print(f"deleted {deleted} conversation records older than {days:g} days")
    return 0


def run_backup(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.store import store_location
    from voicebot.store.backup import backup

    settings = load_settings(args.config)
    print(f"backing up {store_location(settings)} to {args.file} ...", file=sys.stderr, flush=True)
    s = backup(settings, args.file)
    print(f"backup of {s.store} written to {s.file} ({s.size()}, schema {s.version}, {s.seconds:.1f} s): "
          f"{s.counts()}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.store.backup import restore

    s = restore(load_settings(args.config), args.file, lambda question: args.yes or _ask(question))
    if s is None:
        print("not restored: the store is unchanged", file=sys.stderr)
        return 1
    print(f"restored {s.file} into {s.store} (schema {s.version}, {s.seconds:.1f} s): {s.counts()}")
    return 0


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question}\nvoicebot: not asking without a terminal: add --yes", file=sys.stderr)
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes", "j", "ja")
