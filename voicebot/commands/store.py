"""``voicebot store purge``: delete records older than the retention period."""

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
