"""A fake TTS engine implementing the real interface, for tests of anything that speaks.

Tests of the dialogue or the call handler use it to get audio without an SDK: 0.05 s of a tone per
character, so lengths are predictable.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from voicebot.errors import EngineError
from voicebot.speech.tts.base import Synthesized, TTSEngine

@dataclasses.dataclass
class FakeConfig:
    voice: str = "a"


class FakeTTS(TTSEngine):
    """0.05 s of a 440 Hz tone per character at 22050 Hz; counts its calls."""

    name = "fake"
    Config = FakeConfig
    rate = 22050

    def __init__(self, config: FakeConfig | None = None, fail_on: str | None = None) -> None:
        self.config = config or FakeConfig()
        self.fail_on = fail_on
        self.calls: list[str] = []
        self.prepared = 0
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> Synthesized:
        with self._lock:
            self.calls.append(text)
        if self.fail_on and self.fail_on in text:
            raise EngineError("fake failure")
        n = int(0.05 * self.rate * len(text))
        t = np.arange(n) / self.rate
        return Synthesized((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), self.rate)

    def cache_key_parts(self) -> dict:
        return {"engine": self.name, "voice": self.config.voice}

    def prepare(self) -> None:
        self.prepared += 1
