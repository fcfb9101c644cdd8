"""Evaluate the matcher on a labelled set (``voicebot eval intents``) and time it (bench).

A set is a YAML list of ``{text: ..., intent: <id or none>}``; an entry may carry ``audio:`` (a WAV
path relative to the set file) instead of text, which goes through the speech engine first.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voicebot.config import load_records, load_yaml
from voicebot.errors import ConfigError
from voicebot.nlu.matcher import NONE, IntentMatcher


@dataclasses.dataclass(frozen=True)
class Entry:
    intent: str
    text: str | None = None
    audio: str | None = None  # a WAV path relative to the set file

    def validate(self) -> None:
        if self.text is None and self.audio is None:
            raise ValueError("each entry needs text: (or audio:)")


def load_set(path: Path, known: set[str]) -> list[Entry]:
    """Read and check an evaluation set; unknown intents are errors with file and line."""
    entries = load_records(path, Entry)
    _, where = load_yaml(path)
    for i, entry in enumerate(entries):
        if entry.intent != NONE and entry.intent not in known:
            loc = where.get(f"[{i}].intent")
            raise ConfigError(f"unknown intent {entry.intent!r}", file=str(path),
                              line=loc.line if loc else None, key=f"[{i}].intent")
    return [dataclasses.replace(e, audio=str(path.parent / e.audio)) if e.audio else e for e in entries]


def percentiles(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {"p50": 0.0, "p95": 0.0}
    p50, p95 = np.percentile(values_ms, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}


def evaluate(matcher: IntentMatcher, entries: list[Entry],
             transcribe: Callable[[Path], str] | None = None) -> dict:
    """Top-1 accuracy over all entries (``none`` included), per intent, confusions and latency."""
    per_intent: dict[str, dict[str, int]] = {}
    confusions, latencies, skipped = [], [], []
    correct = oos_total = oos_none = asks = 0
    for entry in entries:
        text = entry.text
        if text is None:
            if transcribe is None:
                skipped.append(str(entry.audio))
                continue
            text = transcribe(entry.audio)
        t0 = time.perf_counter()
        result = matcher.match(text)
        latencies.append((time.perf_counter() - t0) * 1000)
        stats = per_intent.setdefault(entry.intent, {"n": 0, "correct": 0})
        stats["n"] += 1
        asks += result.decision == "ask"
        if entry.intent == NONE:
            oos_total += 1
            oos_none += result.intent == NONE
        if result.intent == entry.intent:
            correct += 1
            stats["correct"] += 1
        else:
            confusions.append({"text": text, "expected": entry.intent, "got": result.intent,
                               "confidence": result.confidence})
    n = sum(s["n"] for s in per_intent.values())
    return {
        "accuracy": round(correct / n, 4) if n else 0.0,
        "n": n,
        "none_rate": round(oos_none / oos_total, 4) if oos_total else None,
        "ask_rate": round(asks / n, 4) if n else 0.0,
        "per_intent": dict(sorted(per_intent.items())),
        "confusions": confusions,
        "latency_ms": percentiles(latencies),
        "skipped_audio": skipped,
    }
