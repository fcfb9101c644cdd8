"""``voicebot knowledge check [--tenant T] [--accept] [--json]``: validate a tenant's articles and
run its evaluation gate (voicebot/knowledge/gate.py). Exit 1 when the articles are invalid or
accuracy fell by more than the gate allows, listing the newly failing lines."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="validate the articles and run the tenant's evaluation gate")
    p.add_argument("--tenant", help="the tenant's folder under knowledge.directory (default: knowledge.tenant)")
    p.add_argument("--accept", action="store_true",
                   help="write the results as the new baseline (_baseline.json) after a reviewed change")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voicebot.config import PROJECT_ROOT, load_settings
    from voicebot.errors import VoicebotError
    from voicebot.knowledge import knowledge_dir, load_for_settings
    from voicebot.knowledge.gate import GATE_FILE, run_gate, write_baseline
    from voicebot.nlu import matcher_for_settings

    settings = load_settings(args.config)
    directory = knowledge_dir(settings)
    if args.tenant:
        directory = directory.parent / args.tenant
        if not directory.is_dir():
            raise VoicebotError(f"no knowledge folder for tenant {args.tenant!r}: {directory}")
    kb = load_for_settings(settings, directory)  # invalid articles raise with file, line and key
    for warning in kb.warnings:
        print(f"warning: {warning}")
    result = run_gate(matcher_for_settings(settings, kb), set(kb.ids), directory, PROJECT_ROOT)
    if result is None:
        raise VoicebotError(f"{len(kb.articles)} articles are valid, but {directory / GATE_FILE} is missing: "
                            "name the evaluation sets that gate changes there")
    if args.accept:
        print(f"baseline written: {write_baseline(directory, result)}")
    if args.json:
        print(json.dumps({"ok": result.ok, "articles": len(kb.articles),
                          "sets": {s.name: {"n": s.n, "accuracy": round(s.accuracy, 4), "baseline": s.baseline,
                                            "failed": s.failed, "newly_failing": [str(m) for m in s.newly_failing]}
                                   for s in result.sets}}, ensure_ascii=False, indent=1))
    else:
        print(f"{len(kb.articles)} articles valid ({directory})")
        print(result.report())
    return 0 if result.ok or args.accept else 1
