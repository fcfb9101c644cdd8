"""``speech.asr``: which engine, how many decoding threads, and each engine's own options.

Engine options live under ``speech.asr.<engine>`` and are validated by the engine's own dataclass
(``ENGINE.config_class``), so adding an engine needs no change here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

# engine name -> module that defines ENGINE (imported only when that engine is used)
ENGINES = {
    "whisper": "voicebot.speech.asr.whisper",
    "vosk": "voicebot.speech.asr.vosk",
    "script": "voicebot.speech.asr.script",  # the declared test recognizer (tests only)
}


@dataclasses.dataclass
class AsrConfig:
    engine: str = "whisper"
    workers: int = 0                 # decoding threads; 0 = one per CPU core
    nice: int = 10                   # decoding runs this much nicer than the event loop (priority.py)
    whisper: dict[str, Any] = dataclasses.field(default_factory=dict)
    vosk: dict[str, Any] = dataclasses.field(default_factory=dict)
    script: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine: unknown engine {self.engine!r} (known: {', '.join(ENGINES)})")
        if self.engine == "script":
            from voicebot.speech.asr.script import ALLOW_ENV, allowed

            if not allowed():
                raise ValueError(f"engine: 'script' is the test recognizer; it runs only with {ALLOW_ENV}=1")
        if self.workers < 0:
            raise ValueError("workers: must be 0 (one per core) or more")
        if not 0 <= self.nice <= 19:
            raise ValueError("nice: must be between 0 (same priority as the event loop) and 19")

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


def configured_models(settings) -> list[str]:
    """Model names the configured engine's section mentions (for `models install --defaults`)."""
    cfg = settings.section("speech.asr", AsrConfig)
    section = getattr(cfg, cfg.engine, {}) or {}
    model = section.get("model")
    return [model] if isinstance(model, str) else []
