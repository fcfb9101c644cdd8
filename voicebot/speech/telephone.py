"""Simulate the phone line calls arrive over: 8 kHz G.711 μ-law (for evals and benchmarks)."""

from __future__ import annotations

import numpy as np

from voicebot.speech.audio import resample, ulaw_decode, ulaw_encode

PHONE_RATE = 8000


def phone_line(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Resample to 8 kHz and round-trip through μ-law; returns (samples, 8000)."""
    narrow = resample(samples, rate, PHONE_RATE)
    return ulaw_decode(ulaw_encode(narrow)), PHONE_RATE
