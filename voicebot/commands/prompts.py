"""``voicebot prompts``: pre-synthesize what the bot says (``build``) and listen to it (``say``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from voicebot.config import Settings, load_settings
from voicebot.speech.audio import write_wav
from voicebot.speech.tts.factory import create_tts, create_tts_cache
from voicebot.speech.tts.prebuild import dedupe, dialogue_texts, prebuild, prompt_texts
from voicebot.speech.tts.speech_out import create_speech_out, fixed_prompts, prompt_recordings

#: the call rates: slin16 (16 kHz) and ulaw (8 kHz) ExternalMedia legs
CALL_RATES = (16000, 8000)
_FORMAT_RATES = {"slin16": 16000, "ulaw": 8000}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("prompts", help="pre-synthesize prompts and answers; listen to TTS")
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    b = sub.add_parser("build", help="synthesize every line the phone dialogue may say into the TTS cache")
    b.add_argument("--knowledge", metavar="DIR", type=Path, help="knowledge folder (default: from config)")
    b.add_argument("--no-knowledge", action="store_true", help="the dialogue's fixed lines only")
    b.add_argument("--rate", type=int, action="append", metavar="HZ",
                   help=f"call rate to build for (repeatable; default: {' and '.join(map(str, CALL_RATES))})")
    b.add_argument("--engine", help="TTS engine instead of speech.tts.engine")
    b.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="parallel syntheses")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.set_defaults(func=build)

    s = sub.add_parser("say", help="synthesize one text into a WAV file (from the disk cache when it is a "
                       "known line; any other text is synthesized in memory and not cached)")
    s.add_argument("text", help="Danish text to say")
    s.add_argument("--out", type=Path, required=True, metavar="FILE.wav")
    s.add_argument("--rate", type=int, help="sample rate (default: the call rate from media.format)")
    s.add_argument("--engine", help="TTS engine instead of speech.tts.engine")
    s.set_defaults(func=say)


def build(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    engine = create_tts(settings, args.engine)
    caches = [create_tts_cache(settings, rate, engine) for rate in (args.rate or CALL_RATES)]
    if args.no_knowledge:
        prompts = fixed_prompts(settings)
        items = dedupe(prompt_texts(prompts, prompt_recordings(settings, prompts)))
    else:
        items = dialogue_texts(settings, load_knowledge_base(settings, args.knowledge))
    report = prebuild(items, caches, jobs=args.jobs, progress=not args.json)
    if args.json:
        print(json.dumps({"engine": engine.name, "rates": [c.rate for c in caches],
                          "cache_dir": str(caches[0].directory), **vars(report)}, ensure_ascii=False))
    else:
        rates = ", ".join(f"{c.rate} Hz" for c in caches)
        print(f"prompts build ({engine.name}, {rates}, {caches[0].directory}): {report.summary()}")
        for failure in report.failed:
            print(f"  failed: {failure}", file=sys.stderr)
    return 1 if report.failed else 0


def load_knowledge_base(settings: Settings, directory: Path | None):
    """The knowledge whose answers (and department lines) are pre-synthesized: every tenant's, as
    `voicebot serve` loads it, or the one folder ``directory``."""
    from voicebot.knowledge import load_for_settings

    return load_for_settings(settings, directory)


def say(args: argparse.Namespace) -> int:
    import asyncio

    settings = load_settings(args.config)
    rate = args.rate or _FORMAT_RATES[settings.media.format]
    engine = create_tts(settings, args.engine)
    speech = create_speech_out(settings, rate, create_tts_cache(settings, rate, engine))
    samples = asyncio.run(speech.audio_for(args.text))
    write_wav(args.out, samples, rate)
    print(f"{args.out}: {len(samples) / rate:.2f} s at {rate} Hz ({engine.name})")
    return 0
