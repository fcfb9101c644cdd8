"""``voicebot eval intents --set FILE [--json]``: accuracy of the intent matcher on a labelled set."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("intents", help="intent accuracy on a labelled YAML set")
    p.add_argument("--set", dest="set_file", required=True, metavar="FILE",
                   help="YAML list of {text|audio, intent}")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run)


def _transcriber(settings):
    """The speech module's file transcriber, or None (audio entries are then skipped)."""
    try:
        from voicebot.speech import transcribe_file
    except ImportError:
        log.warning("voicebot.speech.transcribe_file is not available: audio entries are skipped")
        return None
    return lambda path: transcribe_file(settings, path)


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.knowledge import load_for_settings
    from voicebot.nlu import matcher_for_settings
    from voicebot.nlu.evaluate import evaluate, load_set

    settings = load_settings(args.config)
    kb = load_for_settings(settings)
    matcher = matcher_for_settings(settings, kb)
    entries = load_set(Path(args.set_file), set(kb.ids))
    needs_audio = any(e.text is None for e in entries)
    result = evaluate(matcher, entries, _transcriber(settings) if needs_audio else None)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return 0
    print(f"accuracy {result['accuracy']:.3f} over {result['n']} utterances"
          f" (out of scope answered none: {result['none_rate']}, ask rate {result['ask_rate']})")
    print(f"latency ms p50 {result['latency_ms']['p50']} p95 {result['latency_ms']['p95']}")
    for intent, s in result["per_intent"].items():
        if s["correct"] < s["n"]:
            print(f"  {intent:22} {s['correct']}/{s['n']}")
    for c in result["confusions"]:
        print(f"  {c['expected']:>20} -> {c['got']:20} {c['confidence']:.2f}  {c['text']}")
    if result["skipped_audio"]:
        print(f"skipped {len(result['skipped_audio'])} audio entries (no speech engine)")
    return 0
