"""``voicebot knowledge check [--tenant T] [--accept] [--json]``: validate every tenant's articles
and run the evaluation gates (voicebot/knowledge/gate.py) of every tenant that has one, or of T. Exit 1 when the articles are invalid or
accuracy fell by more than the gate allows, listing the newly failing lines."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="validate the articles and run the tenant's evaluation gate")
    p.add_argument("--tenant", help="run only this tenant's gate (default: every tenant with a _gate.yaml)")
    p.add_argument("--accept", action="store_true",
                   help="write the results as the new baseline (_baseline.json) after a reviewed change")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voicebot.config import PROJECT_ROOT, load_settings
    from voicebot.errors import VoicebotError
    from voicebot.knowledge import knowledge_dir, knowledge_root, load_for_settings
    from voicebot.knowledge.gate import GATE_FILE, run_gate, write_baseline
    from voicebot.nlu import matcher_for_settings

    settings = load_settings(args.config)
    # every tenant, strictly: a broken folder fails the check here rather than being left out in serve
    kb = load_for_settings(settings, strict=True)  # invalid articles raise with file, line and key
    for warning in kb.warnings:
        print(f"warning: {warning}")
    if args.tenant and args.tenant not in kb.tenants:
        raise VoicebotError(f"no knowledge folder for tenant {args.tenant!r} under {knowledge_root(settings)} "
                            f"(tenants: {', '.join(sorted(kb.tenants))})")
    # the gates run the platform's matcher (the main number's bot, all tenants' articles)
    matcher = matcher_for_settings(settings, kb)
    main_dir = knowledge_dir(settings)
    folders = [kb.tenants[args.tenant].folder] if args.tenant else [t.folder for t in kb.tenants.values()]
    results = {}
    for folder in folders:
        result = run_gate(matcher, set(kb.ids), folder, PROJECT_ROOT)
        if result is None:
            if folder == main_dir or args.tenant:
                raise VoicebotError(f"{len(kb.articles)} articles are valid, but {folder / GATE_FILE} is missing: "
                                    "name the evaluation sets that gate changes there")
            continue  # a tenant without its own gate is covered by the main tenant's sets
        results[folder.name] = result
        if args.accept:
            print(f"baseline written: {write_baseline(folder, result)}")
    ok = all(r.ok for r in results.values())
    if args.json:
        sets = {s.name: {"tenant": tenant, "n": s.n, "accuracy": round(s.accuracy, 4), "baseline": s.baseline,
                         "failed": s.failed, "newly_failing": [str(m) for m in s.newly_failing]}
                for tenant, result in results.items() for s in result.sets}
        print(json.dumps({"ok": ok, "articles": len(kb.articles), "tenants": sorted(kb.tenants), "sets": sets},
                         ensure_ascii=False, indent=1))
    else:
        counts = ", ".join(f"{t}: {sum(a.tenant == t for a in kb.articles)}" for t in kb.tenants)
        print(f"{len(kb.articles)} articles valid ({counts})")
        for tenant, result in results.items():
            print(f"gate of {tenant}:")
            print(result.report())
    return 0 if ok or args.accept else 1
