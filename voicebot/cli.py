"""The ``voicebot`` command. Each subcommand lives in its own module under ``voicebot.commands``.

A command module defines ``register(subparsers)`` which adds its parser and sets ``func`` to a
function taking the parsed ``argparse.Namespace`` and returning an exit code. ``eval`` and ``bench``
group several modules under one word (``voicebot eval asr``, ``voicebot eval intents``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from voicebot.errors import VoicebotError

# top-level commands: name -> module
COMMANDS = ["serve", "call", "doctor", "chat", "models", "prompts", "records", "store", "report", "install",
            "hours"]
# grouped commands: group -> modules that each register one sub-subcommand
GROUPS = {
    "eval": ["eval_asr", "eval_intents", "eval_closed"],
    "bench": ["bench_speech", "bench_intents", "bench_call", "bench_calls", "bench_soak"],
    "knowledge": ["knowledge_check"],
    "staff": ["staff_add"],
}


def _load(name: str):
    try:
        return importlib.import_module(f"voicebot.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"voicebot.commands.{name}":
            return None  # not built yet
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", help="settings file overlaid on the embedded defaults "
                        "(default: $VOICEBOT_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        if module is not None:
            module.register(sub)
    for group, modules in GROUPS.items():
        loaded = [m for m in (_load(n) for n in modules) if m is not None]
        if not loaded:
            continue
        gp = sub.add_parser(group, help=f"{group} commands")
        gsub = gp.add_subparsers(dest="what", metavar="WHAT", required=True)
        for module in loaded:
            module.register(gsub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from voicebot.logs import setup_logging

    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except VoicebotError as exc:
        print(f"voicebot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
