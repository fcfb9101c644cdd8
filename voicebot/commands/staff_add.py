"""``voicebot staff add USER --tenant T``: create a staff-page account (or set a new password).

The password is read with getpass (no echo), or as the first line of standard input with
``--password-stdin`` (for scripts); it is never printed or logged, and only its argon2 hash is
stored (``var/staff.db``, see ``voicebot/staff/users.py``).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from voicebot.errors import VoicebotError


def register(subparsers) -> None:
    p = subparsers.add_parser("add", help="create a staff-page user (/staff on the admin listener)")
    p.add_argument("user", help="user name (a-z, 0-9, '.', '_', '-')")
    p.add_argument("--tenant", required=True, metavar="T", help="the tenant whose records the user sees (e.g. kff)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input instead of prompting")
    p.add_argument("--db", metavar="FILE", help="the accounts file (default: var/staff.db)")
    p.set_defaults(func=run)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Adgangskode / password: ")
    if getpass.getpass("Gentag / repeat: ") != first:
        raise VoicebotError("the passwords differ; nothing was changed")
    return first


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.staff.users import DEFAULT_PATH, StaffUsers

    from voicebot.knowledge import knowledge_root
    from voicebot.knowledge.tenants import tenant_folders

    settings = load_settings(args.config)
    path = args.db or settings.path(DEFAULT_PATH)
    tenants = [p.name for p in tenant_folders(knowledge_root(settings))]
    if args.tenant not in tenants:  # a typo would show an empty dashboard: say so, but allow it
        print(f"warning: tenant {args.tenant!r} has no folder under {knowledge_root(settings)} "
              f"(tenants: {', '.join(tenants)}); the user sees only records of that name", file=sys.stderr)
    password = read_password(args.password_stdin)
    users = StaffUsers(path)
    try:
        user = users.add(args.user, args.tenant, password)
    finally:
        users.close()
    print(f"staff user {user.name!r} (tenant {user.tenant}) saved in {path}")
    return 0
