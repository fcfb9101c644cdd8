"""``voicebot eval closed --set FILE [--telephone] [--engine E] [--json]``: closed-set accuracy.

FILE is a YAML list of ``{audio | say | noise, choices: {key: [phrases]}, answer: key or null}``:
``audio`` is a WAV path (relative to FILE or absolute), ``say`` is synthesized with espeak-ng
(a smoke test only: accuracy is measured on real speech), ``noise`` is ``silence`` or ``hiss``.
``answer: null`` means none of the choices was said (the recognizer must answer "none").
Latency is that of a second scoring (silence scores cached, as in later turns of a call); the
first scoring of a set is reported as ``cold_p50_ms``.
Quote keys and answers that YAML reads as booleans (``"no"``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm


@dataclass
class SetEntry:
    choices: dict[str, list[str]]
    answer: str | None = None                       # null: none of the choices
    audio: str = ""                                 # WAV, relative to the set file
    say: str = ""                                   # or: Danish text for espeak-ng
    noise: Literal["", "silence", "hiss"] = ""      # or: 2 s of silence / hiss
    seconds: float = 2.0                            # length of ``noise``

    def validate(self) -> None:
        if sum(bool(x) for x in (self.audio, self.say, self.noise)) != 1:
            raise ValueError("give exactly one of audio, say, noise")
        if not self.choices:
            raise ValueError("choices: at least one choice")
        if self.answer is not None and self.answer not in self.choices:
            raise ValueError(f"answer: {self.answer!r} is not a key of choices")


@dataclass
class Item:
    name: str
    answer: str | None
    key: str | None
    text: str
    confidence: float
    scores: dict[str, float]
    candidates: int
    elapsed_s: float = 0.0          # first scoring of this set (silence scores computed)
    warm_s: float = 0.0             # again, as later turns of a call (silence scores cached)
    correct: bool = field(init=False)

    def __post_init__(self) -> None:
        self.correct = self.key == self.answer


def register(subparsers) -> None:
    p = subparsers.add_parser("closed", help="accuracy and latency of closed-set recognition")
    p.add_argument("--set", required=True, metavar="FILE", help="YAML list of {audio, choices, answer}")
    p.add_argument("--telephone", action="store_true", help="8 kHz μ-law round trip first")
    p.add_argument("--engine", help="ASR engine (default: speech.asr.engine)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def load_set(path: Path) -> list[SetEntry]:
    from voicebot.config import load_records

    return load_records(path, SetEntry)


def entry_audio(entry: SetEntry, base: Path) -> tuple[np.ndarray, int, str]:
    """(samples, rate, display name) of one entry, synthesizing ``say`` and ``noise``."""
    from voicebot.speech.audio import read_wav

    if entry.audio:
        path = Path(entry.audio) if Path(entry.audio).is_absolute() else base / entry.audio
        samples, rate = read_wav(path)
        return samples, rate, path.name
    if entry.say:
        from voicebot.speech.tts.espeak import EspeakTTS

        spoken = EspeakTTS().synthesize(entry.say)
        return spoken.samples, spoken.rate, f"say:{entry.say}"
    n = int(16000 * entry.seconds)
    if entry.noise == "silence":
        return np.zeros(n, dtype=np.int16), 16000, "silence"
    hiss = np.random.default_rng(7).standard_normal(n) * 300
    return hiss.astype(np.int16), 16000, "hiss"


def choices_of(entry: SetEntry):
    from voicebot.speech.asr import Choice

    return [Choice(key, tuple(phrases)) for key, phrases in entry.choices.items()]


def evaluate(settings, set_path: Path, telephone: bool, engine: str | None,
             progress: bool = True) -> list[Item]:
    from voicebot.speech.asr import load_engine
    from voicebot.speech.asr.closed import build_candidates
    from voicebot.speech.telephone import phone_line

    eng = load_engine(settings, engine=engine)
    if not eng.closed_sets:
        from voicebot.errors import EngineError

        raise EngineError(f"the {eng.name} engine cannot score closed sets")
    items = []
    for entry in tqdm(load_set(set_path), desc="eval closed", unit="clip", disable=not progress):
        samples, rate, name = entry_audio(entry, set_path.parent)
        if telephone:
            samples, rate = phone_line(samples, rate)
        choices = choices_of(entry)
        t0 = time.perf_counter()
        r = eng.score_choices(samples, rate, choices)
        t1 = time.perf_counter()
        eng.score_choices(samples, rate, choices)
        items.append(Item(name, entry.answer, r.key, r.text, round(r.confidence, 3), r.scores,
                          len(build_candidates(choices)), t1 - t0, time.perf_counter() - t1))
    return items


def summary(items: list[Item], engine: str, telephone: bool) -> dict:
    def accuracy(part: list[Item]) -> float | None:
        return round(sum(i.correct for i in part) / len(part), 4) if part else None

    ms = np.array([i.elapsed_s * 1000 for i in items]) if items else np.zeros(1)
    warm = np.array([i.warm_s * 1000 for i in items]) if items else np.zeros(1)
    in_set = [i for i in items if i.answer is not None]
    other = [i for i in items if i.answer is None]
    return {"engine": engine, "telephone": telephone, "items": len(items),
            "accuracy": accuracy(items), "in_set_items": len(in_set), "in_set_accuracy": accuracy(in_set),
            "other_items": len(other), "other_accuracy": accuracy(other),
            "p50_ms": round(float(np.percentile(warm, 50)), 1), "p95_ms": round(float(np.percentile(warm, 95)), 1),
            "cold_p50_ms": round(float(np.percentile(ms, 50)), 1),
            "mean_candidates": round(float(np.mean([i.candidates for i in items])), 1) if items else 0}


def run(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.speech.asr import AsrConfig

    settings = load_settings(args.config)
    engine = args.engine or settings.section("speech.asr", AsrConfig).engine
    items = evaluate(settings, Path(args.set), args.telephone, engine, progress=not args.json)
    total = summary(items, engine, args.telephone)
    if args.json:
        print(json.dumps({**total, "per_item": [asdict(i) for i in items]}, ensure_ascii=False, indent=1))
        return 0
    for i in items:
        mark = "ok " if i.correct else "BAD"
        print(f"{mark} {i.name:24.24} want {i.answer!s:10.10} got {i.key!s:10.10} "
              f"conf {i.confidence:4.2f} {i.warm_s * 1000:5.0f} ms  {i.scores}")
    print(f"\n{engine}{' (telephone)' if args.telephone else ''}: accuracy {total['accuracy']} over "
          f"{total['items']} items (in set {total['in_set_accuracy']} of {total['in_set_items']}, "
          f"other {total['other_accuracy']} of {total['other_items']}), "
          f"latency p50 {total['p50_ms']} ms p95 {total['p95_ms']} ms "
          f"(first use of a set: p50 {total['cold_p50_ms']} ms), {total['mean_candidates']} candidates")
    return 0
