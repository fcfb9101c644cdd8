"""The TTS interface every engine implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Synthesized:
    samples: np.ndarray  # int16 mono
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


class TTSEngine(abc.ABC):
    """Text in, int16 audio out. Engines are blocking; callers run them in a worker thread."""

    name: str = "base"

    @abc.abstractmethod
    def synthesize(self, text: str) -> Synthesized:
        """Synthesize ``text`` at the engine's native rate."""

    def cache_key_parts(self) -> dict:
        """Everything besides the text that changes the audio (voice, speed, model...)."""
        return {"engine": self.name}
