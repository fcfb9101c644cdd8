"""The ASR interface every engine implements (blocking; the pool runs it off the event loop).

An engine opens one ``AsrStream`` per utterance: ``accept(samples)`` as audio arrives (a streaming
engine decodes there and returns its partial text; a segment engine just buffers) and ``finish()``
for the final ``AsrResult``. ``SegmentStream`` adapts any engine that can only ``decode`` a whole
utterance (faster-whisper) to this interface; the VAD endpointer decides where utterances end.

Closed questions (yes/no, "pas eller kørekort?", a survey 1-5) are better served by scoring only
the expected answers against the audio than by free transcription: an engine that can do so sets
``closed_sets`` and implements ``score_choices``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class AsrResult:
    text: str
    confidence: float        # 0..1, engine-specific but monotonic; 0 for empty text
    audio_s: float           # seconds of audio decoded
    decode_s: float          # wall-clock decoding time (the part after the last accept for streams)
    engine: str = ""

    @property
    def rtf(self) -> float:
        return self.decode_s / self.audio_s if self.audio_s > 0 else 0.0


@dataclass(frozen=True)
class Choice:
    """One expected answer to a closed question: ``key`` for the caller, ``phrases`` as spoken
    (Danish words, digits written as words), e.g. ``Choice("yes", ("ja", "jo", "ja tak"))``."""

    key: str
    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.phrases, str):  # Choice("pas", "pas") would iterate characters
            object.__setattr__(self, "phrases", (self.phrases,))
        elif not isinstance(self.phrases, tuple):
            object.__setattr__(self, "phrases", tuple(self.phrases))
        if not self.key or not any(p.strip() for p in self.phrases):
            raise ValueError(f"choice {self.key!r}: needs a key and at least one phrase")


@dataclass(frozen=True)
class ClosedResult:
    """Which choice the audio matched. ``key`` None: none of them (silence or another answer)."""

    key: str | None
    text: str                  # the best phrase of the chosen choice, "" when key is None
    confidence: float          # 0..1: the winner's share, "none of them" included
    scores: dict[str, float]   # per choice key (and "" for none): evidence in nats
    elapsed_s: float

    def as_asr_result(self, audio_s: float, engine: str = "") -> AsrResult:
        """The answer as an ordinary transcript, so the dialogue needs no closed-set logic."""
        return AsrResult(self.text, self.confidence if self.text else 0.0, audio_s, self.elapsed_s,
                         engine)


class AsrStream(abc.ABC):
    """One utterance being recognized. Not thread-safe: one caller at a time."""

    @abc.abstractmethod
    def accept(self, samples: np.ndarray) -> str | None:
        """Feed int16 mono samples; return the current partial text (None: no partials)."""

    @abc.abstractmethod
    def finish(self) -> AsrResult:
        """Decode what is left and return the final result. The stream is done afterwards."""


class AsrEngine(abc.ABC):
    """A loaded model. ``open_stream`` may be called from several threads at once."""

    name: ClassVar[str] = "base"
    streaming: ClassVar[bool] = False     # partials while audio arrives?
    closed_sets: ClassVar[bool] = False   # can score_choices?
    speculative: ClassVar[bool] = True    # may decode at a pause and have the result thrown away
    config_class: ClassVar[type] = object

    def __init__(self, config: Any, vocabulary: Sequence[str] = (), workers: int = 1) -> None:
        self.config = config
        self.vocabulary = list(vocabulary)
        self.workers = workers

    @classmethod
    def uses_vocabulary(cls, config: Any) -> bool:
        """Whether ``vocabulary`` changes this engine (else one loaded model serves every list)."""
        return True

    @abc.abstractmethod
    def open_stream(self, rate: int) -> AsrStream:
        """Start one utterance of int16 audio at ``rate`` Hz."""

    def transcribe(self, samples: np.ndarray, rate: int) -> AsrResult:
        """Recognize a whole utterance (blocking)."""
        stream = self.open_stream(rate)
        stream.accept(samples)
        return stream.finish()

    def score_choices(self, samples: np.ndarray, rate: int, choices: Sequence[Choice]) -> ClosedResult:
        """Pick which of ``choices`` a whole utterance is, or none (blocking; thread-safe).
        Only engines with ``closed_sets`` implement it."""
        raise NotImplementedError(f"the {self.name} engine cannot score closed sets")


class SegmentEngine(AsrEngine):
    """An engine that decodes whole utterances; streams just buffer until ``finish``."""

    @abc.abstractmethod
    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        """Return (text, confidence) for one utterance."""

    def open_stream(self, rate: int) -> AsrStream:
        return SegmentStream(self, rate)


class SegmentStream(AsrStream):
    def __init__(self, engine: SegmentEngine, rate: int) -> None:
        self.engine, self.rate = engine, rate
        self.chunks: list[np.ndarray] = []

    def accept(self, samples: np.ndarray) -> None:
        self.chunks.append(np.asarray(samples, dtype=np.int16))
        return None

    def finish(self) -> AsrResult:
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        self.chunks = []
        t0 = time.perf_counter()
        text, confidence = self.engine.decode(audio, self.rate) if len(audio) else ("", 0.0)
        return AsrResult(text, confidence if text else 0.0, len(audio) / self.rate,
                         time.perf_counter() - t0, self.engine.name)
