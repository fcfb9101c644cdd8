"""``voicebot chat``: talk to the bot in the terminal (``--once "..."`` answers one question)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="chat with the bot in the terminal (same answers as the web chat)")
    p.add_argument("--once", metavar="TEXT", help="answer one message and exit")
    p.add_argument("--debug", action="store_true", help="also print intent, confidence and runner-ups")
    p.set_defaults(func=run)


def _print(result: dict, debug: bool) -> None:
    reply = result["reply"]
    print(reply["text"])
    if reply.get("link"):
        print(f"Læs mere: {reply['link']}")
    for i, option in enumerate(reply.get("options", []), 1):
        print(f"  {i}) {option}")
    if debug:
        print(f"[intent={result['intent']} confidence={result['confidence']}]", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from voicebot.chat.service import build_chat_service
    from voicebot.config import load_settings

    service = build_chat_service(load_settings(args.config))
    if args.once is not None:
        _print(service.reply(None, args.once), args.debug)
        return 0
    print("Borgerservice-chat. Skriv dit spørgsmål (tom linje eller Ctrl-D afslutter).")
    session = None
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            return 0
        result = service.reply(session, line[: service.config.max_message_chars])
        session = result["session_id"]
        _print(result, args.debug)
