"""Knowledge changes gated by an evaluation ("content CI").

A tenant's folder names its evaluation sets in ``_gate.yaml`` and keeps the last accepted
results in ``_baseline.json`` (both in the repository, next to the articles; the loader skips
names starting with ``_``). ``run_gate`` matches every text entry of every set with the
matcher built from the new articles and compares with the baseline: a set whose accuracy drops
by more than ``max_drop_points`` (or one line, in a set of fewer than 100) fails the gate, and the lines that fail now but passed in the
baseline are listed with their file and line. ``voicebot knowledge check`` runs it, ``make
test`` runs that command, and a SIGHUP reload runs the same gate before switching (a failing
change leaves the old knowledge serving).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from voicebot.config import load_record, load_yaml
from voicebot.errors import ConfigError
from voicebot.nlu.evaluate import load_set

GATE_FILE = "_gate.yaml"
BASELINE_FILE = "_baseline.json"


@dataclasses.dataclass
class GateConfig:
    """``<tenant>/_gate.yaml``"""

    sets: list[str] = dataclasses.field(default_factory=list)  # paths relative to the project root
    max_drop_points: float = 1.0  # accuracy may fall by at most this many points per set

    def validate(self) -> None:
        if not self.sets:
            raise ValueError("sets: name at least one evaluation set")
        if self.max_drop_points < 0:
            raise ValueError("max_drop_points: must not be negative")


@dataclasses.dataclass
class Miss:
    file: str
    line: int | None
    text: str
    expected: str
    got: str

    @property
    def key(self) -> str:
        return f"{self.expected}\t{self.text}"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.text!r} expected {self.expected}, got {self.got}"


@dataclasses.dataclass
class SetResult:
    name: str
    n: int
    accuracy: float
    misses: list[Miss]
    baseline: float | None = None
    newly_failing: list[Miss] = dataclasses.field(default_factory=list)
    failed: bool = False

    def summary(self) -> str:
        was = f" (baseline {100 * self.baseline:.1f} %)" if self.baseline is not None else " (no baseline)"
        verdict = "FAILED" if self.failed else "ok"
        return f"{verdict:6} {self.name}: {100 * self.accuracy:.1f} % of {self.n}{was}"


@dataclasses.dataclass
class GateResult:
    sets: list[SetResult]
    max_drop_points: float

    @property
    def ok(self) -> bool:
        return not any(s.failed for s in self.sets)

    def report(self) -> str:
        lines = []
        for s in self.sets:
            lines.append(s.summary())
            for miss in s.newly_failing:
                lines.append(f"         newly failing: {miss}")
        if not self.ok:
            lines.append(f"accuracy fell by more than {self.max_drop_points:g} point(s): the change is rejected")
        return "\n".join(lines)

    def message(self) -> str:
        """One line for logs: which sets failed and how far they fell."""
        bad = [f"{s.name} {100 * s.accuracy:.1f} % < baseline {100 * (s.baseline or 0):.1f} %"
               f" ({len(s.newly_failing)} newly failing)" for s in self.sets if s.failed]
        return "; ".join(bad) or "ok"

    def baseline_json(self) -> dict:
        return {s.name: {"n": s.n, "accuracy": round(s.accuracy, 4),
                         "failing": sorted(m.key for m in s.misses)} for s in self.sets}


def load_gate(directory: Path) -> GateConfig | None:
    """The tenant's gate, or None when its folder has no ``_gate.yaml``."""
    path = Path(directory) / GATE_FILE
    if not path.is_file():
        return None
    return load_record(path, GateConfig)


def read_baseline(directory: Path) -> dict:
    path = Path(directory) / BASELINE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None


def write_baseline(directory: Path, result: GateResult) -> Path:
    path = Path(directory) / BASELINE_FILE
    path.write_text(json.dumps(result.baseline_json(), ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                    encoding="utf-8")
    return path


def run_gate(matcher, known_intents: set[str], directory: Path, root: Path) -> GateResult | None:
    """Evaluate ``matcher`` on the tenant's sets against its baseline; None without a gate file."""
    gate = load_gate(directory)
    if gate is None:
        return None
    baseline = read_baseline(directory)
    results = []
    for name in gate.sets:
        result = _evaluate_set(matcher, known_intents, root / name, name)
        before = baseline.get(name)
        if before is not None:
            result.baseline = float(before["accuracy"])
            passed_before = set(before.get("failing", []))
            result.newly_failing = [m for m in result.misses if m.key not in passed_before]
            # a set of fewer than 100 lines cannot move by one point: one line is its smallest step
            allowed = max(gate.max_drop_points, 100 / result.n if result.n else 0.0)
            result.failed = 100 * (result.baseline - result.accuracy) > allowed + 1e-9
        results.append(result)
    return GateResult(results, gate.max_drop_points)


def _evaluate_set(matcher, known_intents: set[str], path: Path, name: str) -> SetResult:
    entries = load_set(path, known_intents)  # an intent no article has any more: a located error
    _, where = load_yaml(path)  # the lines, for the report
    misses, n = [], 0
    for i, entry in enumerate(entries):
        if entry.text is None:
            continue  # audio entries need the speech engine: `voicebot eval intents` covers them
        n += 1
        got = matcher.match(entry.text).intent
        if got != entry.intent:
            loc = where.get(f"[{i}].text") or where.get(f"[{i}]")
            misses.append(Miss(name, loc.line if loc else None, entry.text, entry.intent, got))
    accuracy = (n - len(misses)) / n if n else 0.0
    return SetResult(name, n, accuracy, misses)
