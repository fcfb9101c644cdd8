"""``voicebot bench intents [--json]``: latency of matching one utterance (p50/p95).

Runs every article example plus a set of held-apart phrasings through the matcher with the query
cache off, so each utterance pays the full cost, as a new caller would. ``fast_path_share`` is the
share decided by rules and n-grams alone, without the encoder; ``runtime`` is the encoder's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEFAULT_SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "intents-dev.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser("intents", help="intent matching latency per utterance")
    p.add_argument("--set", dest="set_file", metavar="FILE", help="YAML set to time (default: the dev set, "
                   "else the article examples)")
    p.add_argument("--rounds", type=int, default=1, help="passes over the set (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.knowledge import load_for_settings
    from voicebot.nlu import matcher_for_settings
    from voicebot.nlu.evaluate import load_set, percentiles

    settings = load_settings(args.config)
    kb = load_for_settings(settings)
    t0 = time.perf_counter()
    matcher = matcher_for_settings(settings, kb)
    startup_ms = (time.perf_counter() - t0) * 1000
    path = Path(args.set_file) if args.set_file else DEFAULT_SET
    if path.exists():
        texts = [e.text for e in load_set(path, set(kb.ids)) if e.text]
    else:
        texts = [ex for a in kb.articles for ex in a.examples]
    matcher.config.query_cache = 0
    times, fast = [], 0
    for _ in range(max(1, args.rounds)):
        for text in texts:
            matcher._query_cache.clear()
            t = time.perf_counter()
            result = matcher.match(text)
            times.append((time.perf_counter() - t) * 1000)
    fast = sum(1 for t in texts if "embedding" not in matcher.signals(t, fast=True)[1])
    encoder = matcher.embeddings.embedder.inner if matcher.embeddings else None
    out = {"n": len(times), "latency_ms": percentiles(times), "max_ms": round(max(times), 2),
           "fast_path_share": round(fast / len(texts), 3), "startup_ms": round(startup_ms, 1),
           "embeddings": matcher.config.embeddings, "runtime": getattr(encoder, "runtime", None),
           "threads": getattr(encoder, "threads", None), "last": result.intent}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['n']} utterances: p50 {out['latency_ms']['p50']} ms, p95 {out['latency_ms']['p95']} ms, "
              f"max {out['max_ms']} ms; {out['fast_path_share']:.0%} decided without the model; "
              f"encoder {out['runtime'] or 'none'}; start-up {out['startup_ms']} ms")
    return 0
