"""``voicebot models list`` and ``voicebot models install NAME|--defaults``."""

from __future__ import annotations

import argparse
import time

from voicebot.errors import ModelError


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list and install speech/embedding models")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="show every model, where it comes from, and whether it is installed")
    ls.set_defaults(func=cmd_list)
    ins = sub.add_parser("install", help="install models into models/<name>/")
    ins.add_argument("names", nargs="*", metavar="NAME")
    ins.add_argument("--defaults", action="store_true", help="install what the default settings need")
    ins.add_argument("--force", action="store_true", help="reinstall even when installed")
    ins.add_argument("--verify", action="store_true", help="re-hash installed files")
    ins.set_defaults(func=cmd_install)


def cmd_list(args: argparse.Namespace) -> int:
    from voicebot.models import is_installed, load_manifest

    for name, entry in load_manifest().items():
        state = "installed" if is_installed(entry) else "not installed"
        flag = " (default)" if entry.default else ""
        print(f"{name:24} {state}{flag}\n    {entry.description}\n    fetches: {entry.origin()}")
        for fname, spec in entry.files.items():
            src = spec.url or " + ".join(spec.parts) or "(in the package tree)"
            pin = "" if spec.sha256 else "  [sha256 unpinned]"
            print(f"      {fname}: {src}{pin}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.models import install, load_manifest

    entries = load_manifest()
    names = list(args.names)
    if args.defaults:
        names += [n for n in default_models(load_settings(args.config), entries) if n not in names]
    if not names:
        raise ModelError("name a model to install (see `voicebot models list`) or pass --defaults")
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise ModelError(f"unknown model {unknown[0]!r}; known: {', '.join(entries)}")
    for name in names:
        t0 = time.monotonic()
        done = install(entries[name], force=args.force, verify=args.verify)
        verb = "installed" if done else "already installed"
        print(f"{name}: {verb} ({time.monotonic() - t0:.1f} s)")
    return 0


def default_models(settings, entries) -> list[str]:
    """Manifest entries marked default, plus the models the configured ASR engines name."""
    from voicebot.speech.asr.config import configured_models

    names = [n for n, e in entries.items() if e.default]
    names += [m for m in configured_models(settings) if m in entries and m not in names]
    return names
