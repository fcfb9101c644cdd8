"""The TTS interface every engine implements.

An engine module defines a config dataclass (its options, validated from ``speech.tts.<name>``)
and a ``TTSEngine`` subclass with ``Config`` set to that dataclass. Its SDK is imported lazily,
inside the module, on first use, so a missing optional package only matters when it is chosen.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np


@dataclass(frozen=True)
class Synthesized:
    samples: np.ndarray  # int16 mono
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


#: turns a path written in config into an absolute one (``Settings.path``)
PathResolver = Callable[[str | Path], Path]


class TTSEngine(abc.ABC):
    """Text in, int16 audio out. Engines are blocking; callers run them in a worker thread.

    Engines must be safe to call from several threads at once (calls share one engine); an
    engine whose SDK is not, serializes with a lock of its own.
    """

    #: the name used in config (``speech.tts.engine``) and in cache keys
    name: ClassVar[str] = "base"
    #: the dataclass holding this engine's options
    Config: ClassVar[type | None] = None

    @classmethod
    def from_config(cls, config: Any, resolve: PathResolver) -> TTSEngine:
        """Build the engine from its validated options; ``resolve`` makes config paths absolute."""
        return cls(config)  # type: ignore[call-arg]

    @abc.abstractmethod
    def synthesize(self, text: str) -> Synthesized:
        """Synthesize ``text`` at the engine's native rate (raises ``EngineError`` on failure)."""

    def cache_key_parts(self) -> dict[str, Any]:
        """Everything besides the text that changes the audio (voice, speed, model...).

        Must be cheap: it is read without loading the model, so ``prompts build`` can tell what
        is cached already.
        """
        return {"engine": self.name}

    def prepare(self) -> None:
        """Load the model now rather than on the first synthesis (a no-op for most engines)."""
