"""``voicebot install [--root DIR] [--prefix DIR] [--uninstall [--purge]] [--dry-run]``: systemd
units for Asterisk (the chroot) and the bot (``voicebot/install/``; ``make install``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("install", help="install (or remove) the systemd units for Asterisk and the bot")
    p.add_argument("--root", metavar="DIR", help="write the units into this throw-away root only: no user, "
                   "no chown, no systemctl (for tests and image builds)")
    p.add_argument("--prefix", metavar="DIR", help="the project folder the services run from (default: this "
                   "checkout)")
    p.add_argument("--user", default=None, metavar="NAME", help="the bot's system user (default: kk-voicebot)")
    p.add_argument("--uninstall", action="store_true", help="stop, disable and remove both units; the user and "
                   "the data stay")
    p.add_argument("--purge", action="store_true", help="with --uninstall: also remove the user (its files go "
                   "back to root) and /etc/kk-voicebot/voicebot.env; the records in var/ stay")
    p.add_argument("--dry-run", action="store_true", help="print what would be done, and the units, and change nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voicebot import install
    from voicebot.config import PROJECT_ROOT, load_settings

    if args.purge and not args.uninstall:
        print("voicebot: error: --purge goes with --uninstall", file=sys.stderr)
        return 2
    root = Path(args.root).absolute() if args.root else None
    prefix = Path(args.prefix).absolute() if args.prefix else PROJECT_ROOT
    config_arg = args.config or os.environ.get("VOICEBOT_CONFIG")
    config = Path(config_arg).absolute() if config_arg else None
    settings = load_settings(config)
    lay = install.layout(settings, prefix, args.user or install.DEFAULT_USER, config)
    if not args.uninstall:
        install.check_prefix(prefix)
    if root is None and not args.dry_run and os.geteuid() != 0:
        print("voicebot: error: installing services needs root (or --root DIR for a throw-away root)", file=sys.stderr)
        return 2
    steps = (install.uninstall_steps(lay, root, args.purge) if args.uninstall
             else install.install_steps(lay, root))
    if args.dry_run and not args.uninstall:
        for name, text in install.render(lay).items():
            print(f"# ---- {name}\n{text}")
    for step in steps:
        print(("would: " if args.dry_run else "") + step.says)
        if not args.dry_run:
            step.do()
    if not args.dry_run:
        print(_next_steps(args.uninstall, root, lay))
    return 0


def _next_steps(uninstalled: bool, root: Path | None, lay) -> str:
    if root is not None:
        return f"units written under {root}; nothing else changed"
    if uninstalled:
        return "both units removed; the records in var/ stay (voicebot store backup FILE before deleting them)"
    return f"""
installed and enabled (not started):
  systemctl start kk-voicebot           the bot, and Asterisk before it (stop `make run` first)
  systemctl status kk-voicebot kk-voicebot-asterisk
  journalctl -u kk-voicebot -f          the bot's log (Asterisk: -u kk-voicebot-asterisk)
  systemctl reload kk-voicebot          knowledge reload (SIGHUP); Asterisk's reload = asterisk/pbx sync
Commands that write (prompts build, staff add, store restore) run as the bot's user:
  runuser -u {lay.user} -- {lay.voicebot} prompts build"""
