"""Voice activity detection: one tiny ``is_speech(frame)`` interface and its webrtcvad engine.

The endpointing logic (when an utterance starts and ends) lives in ``endpointer.py`` and works with
any object that has ``is_speech``; tests can pass a scripted fake.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from voicebot.errors import EngineError

RATES = (8000, 16000, 32000, 48000)
FRAME_MS = (10, 20, 30)


@dataclasses.dataclass
class VadConfig:
    """``speech.vad``: thresholds for Danish telephone speech (20 ms frames)."""

    aggressiveness: int = 2          # webrtcvad 0 (lenient) .. 3 (strict); 2 suits phone lines
    frame_ms: int = 20               # frame length pushed by the media path
    start_frames: int = 4            # voiced frames among the last `start_window` that start speech
    start_window: int = 6
    end_silence_ms: int = 700        # trailing silence that ends an utterance (Danish turn gap ~470 ms)
    pre_roll_ms: int = 300           # audio kept from before the onset so the first syllable survives
    tail_ms: int = 200               # trailing silence kept at the end of the utterance
    pause_ms: int = 200              # silence after which decoding starts speculatively (0: off)
    complete_end_ms: int = 450       # end the turn after this much silence when the speculative
                                     # transcript is a complete sentence (0: always end_silence_ms)
    max_utterance_ms: int = 15000    # cut long monologues; the dialogue can ask again
    no_input_ms: int = 6000          # silence after reset() before a NoInput event
    barge_in_ms: int = 200           # voiced speech held this long counts as a barge-in
    min_speech_ms: int = 120         # shorter voiced bursts (clicks, coughs) are discarded
    energy_floor_dbfs: float = -50.0  # quieter frames are never speech (webrtcvad adapts slowly)

    def validate(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError("aggressiveness: must be 0, 1, 2 or 3")
        if self.frame_ms not in FRAME_MS:
            raise ValueError("frame_ms: webrtcvad takes 10, 20 or 30 ms frames")
        if not 1 <= self.start_frames <= self.start_window:
            raise ValueError("start_frames: must be between 1 and start_window")
        for name in ("end_silence_ms", "max_utterance_ms", "no_input_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        for name in ("pre_roll_ms", "tail_ms", "barge_in_ms", "min_speech_ms", "pause_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")
        if self.tail_ms > self.end_silence_ms:
            raise ValueError("tail_ms: cannot exceed end_silence_ms")
        if self.pause_ms >= self.end_silence_ms:
            raise ValueError("pause_ms: must be below end_silence_ms (or 0 for no speculative decoding)")
        if self.complete_end_ms and not self.pause_ms < self.complete_end_ms <= self.end_silence_ms:
            raise ValueError("complete_end_ms: must be above pause_ms and at most end_silence_ms (or 0)")


class Vad(Protocol):
    """Anything that says whether one frame of int16 mono audio holds speech."""

    def is_speech(self, frame: np.ndarray) -> bool: ...


class WebrtcVad:
    """webrtcvad (the GMM VAD from WebRTC): microseconds per frame, 8/16/32/48 kHz."""

    def __init__(self, rate: int, aggressiveness: int = 2, frame_ms: int = 20,
                 energy_floor_dbfs: float = -50.0) -> None:
        if rate not in RATES:
            raise EngineError(f"webrtcvad cannot work at {rate} Hz (use one of {RATES})")
        try:
            import webrtcvad
        except ImportError:
            raise EngineError("webrtcvad is missing: pip install webrtcvad-wheels") from None
        self._vad = webrtcvad.Vad(aggressiveness)
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        # compare mean squares, not dB, to keep the per-frame cost at a few microseconds
        self._floor_ms = (32768 * 10 ** (energy_floor_dbfs / 20)) ** 2 * self.frame_samples

    def is_speech(self, frame: np.ndarray) -> bool:
        if len(frame) != self.frame_samples:
            raise ValueError(f"expected {self.frame_samples} samples per frame, got {len(frame)}")
        x = frame.astype(np.int64)
        if int(np.dot(x, x)) < self._floor_ms:
            return False
        return self._vad.is_speech(frame.astype("<i2", copy=False).tobytes(), self.rate)


def create_vad(config: VadConfig, rate: int) -> WebrtcVad:
    return WebrtcVad(rate, config.aggressiveness, config.frame_ms, config.energy_floor_dbfs)
