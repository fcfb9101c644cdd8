"""``voicebot eval asr --set FILE [--telephone] [--engine E] [--json]``: WER and RTF on a test set.

FILE is a YAML list of ``{audio: path, text: reference}`` (paths relative to FILE). Accuracy is
measured on real speech (``../shared/testdata/nst-da/set.yaml``); synthetic speech is a smoke test.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm



@dataclass
class Item:
    audio: str
    reference: str
    hypothesis: str
    errors: int
    words: int
    audio_s: float
    decode_s: float

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else 0.0


def register(subparsers) -> None:
    p = subparsers.add_parser("asr", help="word error rate and real-time factor of the ASR engine")
    p.add_argument("--set", required=True, metavar="FILE", help="YAML list of {audio, text}")
    p.add_argument("--telephone", action="store_true", help="8 kHz μ-law round trip first")
    p.add_argument("--engine", help="ASR engine (default: speech.asr.engine)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


@dataclass
class SetEntry:
    audio: str  # WAV path relative to the set file
    text: str   # the reference transcript


def load_set(path: Path) -> list[tuple[Path, str]]:
    from voicebot.config import load_records

    return [(path.parent / e.audio, e.text) for e in load_records(path, SetEntry)]


def evaluate(settings, entries: list[tuple[Path, str]], telephone: bool, engine: str | None,
             progress: bool = True) -> list[Item]:
    from voicebot.speech.asr import load_engine
    from voicebot.speech.audio import read_wav
    from voicebot.speech.telephone import phone_line
    from voicebot.speech.wer import word_errors

    eng = load_engine(settings, engine=engine)
    items = []
    for audio, reference in tqdm(entries, desc="eval asr", unit="clip", disable=not progress):
        samples, rate = read_wav(audio)
        if telephone:
            samples, rate = phone_line(samples, rate)
        t0 = time.perf_counter()
        result = eng.transcribe(samples, rate)
        decode_s = time.perf_counter() - t0
        errors, words = word_errors(reference, result.text)
        items.append(Item(audio.name, reference, result.text, errors, words, len(samples) / rate, decode_s))
    return items


def summary(items: list[Item], engine: str, telephone: bool) -> dict:
    errors, words = sum(i.errors for i in items), sum(i.words for i in items)
    audio_s, decode_s = sum(i.audio_s for i in items), sum(i.decode_s for i in items)
    return {"engine": engine, "telephone": telephone, "items": len(items),
            "wer": round(errors / words, 4) if words else 0.0,
            "rtf": round(decode_s / audio_s, 4) if audio_s else 0.0,
            "audio_seconds": round(audio_s, 2), "decode_seconds": round(decode_s, 2)}


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.speech.asr import AsrConfig

    settings = load_settings(args.config)
    engine = args.engine or settings.section("speech.asr", AsrConfig).engine
    items = evaluate(settings, load_set(Path(args.set)), args.telephone, engine, progress=not args.json)
    total = summary(items, engine, args.telephone)
    if args.json:
        per_item = [{**asdict(i), "wer": round(i.wer, 4)} for i in items]
        print(json.dumps({**total, "per_item": per_item}, ensure_ascii=False, indent=1))
        return 0
    for i in items:
        print(f"{i.wer:5.2f}  {i.audio}\n       ref: {i.reference}\n       hyp: {i.hypothesis}")
    print(f"\n{engine}{' (telephone)' if args.telephone else ''}: WER {total['wer']:.3f} over "
          f"{total['items']} clips, RTF {total['rtf']:.3f}")
    return 0
