"""``voicebot records``: the latest conversation records, for ops (``--json`` for tools)."""

from __future__ import annotations

import argparse
import json

from voicebot.store.base import ConversationRecord


def register(subparsers) -> None:
    p = subparsers.add_parser("records", help="show the latest conversation records")
    p.add_argument("--last", type=int, default=10, metavar="N", help="how many conversations (default 10)")
    p.add_argument("--ref", help="only conversations with this test reference")
    p.add_argument("--json", action="store_true", help="print JSON (one list) instead of a table")
    p.set_defaults(func=run)


def _timings(timings: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in timings.items())


def format_record(r: ConversationRecord) -> list[str]:
    """A conversation as a header line and one block per turn."""
    tail = f"…{r.caller_tail}" if r.caller_tail else "-"
    survey = r.survey if r.survey is not None else "-"
    lines = [f"{r.started_at}  {r.channel:<5} {r.tenant:<8} {r.outcome or '(live)':<26} survey={survey} "
             f"caller={tail} id={r.id}" + (f" ref={r.ref}" if r.ref else ""),
             f"    ended {r.ended_at or '-'}  intents: {', '.join(r.intents) or '-'}"]
    for t in r.turns:
        conf = f" {t.confidence:.2f}" if t.confidence is not None else ""
        lines.append(f"  {t.index:>2} < {t.heard}")
        lines.append(f"     [{t.decision}] {t.intent or '-'}{conf}  {_timings(t.timings)}".rstrip())
        lines.extend(f"     > {s}" for s in t.said)
    return lines


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.store import open_store

    store = open_store(load_settings(args.config))
    try:
        records = store.by_ref(args.ref)[: args.last] if args.ref else store.recent(args.last)
    finally:
        store.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in records], ensure_ascii=False, indent=2))
        return 0
    if not records:
        print("no conversation records")
    for r in records:
        print("\n".join(format_record(r)))
    return 0
