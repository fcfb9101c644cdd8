"""PCM helpers in numpy: μ-law, resampling, WAV files, loudness. Pure functions, no I/O but files.

Samples are mono ``numpy.int16`` arrays throughout the project (Python 3.13 has no ``audioop``).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_exact(samples: np.ndarray) -> np.ndarray:
    """G.711 μ-law by the formula (ITU-T G.711, as Asterisk does): builds the table below."""
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    x = np.minimum(np.abs(x), _CLIP) + _BIAS
    exponent = np.floor(np.log2(x)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (x >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


# every int16's code, indexed by its bit pattern: one lookup per frame instead of the formula's
# dozen array passes (20 calls are 1,000 frames a second, each way)
_ULAW_ENCODE = _ulaw_encode_exact(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16))


def ulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 μ-law encode int16 samples (other integer types are clipped to int16 first)."""
    x = np.asarray(samples)
    if x.dtype != np.int16:
        x = np.clip(x, -32768, 32767).astype(np.int16)
    return _ULAW_ENCODE[x.view(np.uint16)].tobytes()


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


_ULAW_DECODE = _ulaw_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """G.711 μ-law decode to int16 samples."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample int16 audio with a windowed-sinc low-pass (good enough for telephone speech)."""
    if src_rate == dst_rate or len(samples) == 0:
        return samples.astype(np.int16, copy=False)
    x = samples.astype(np.float64)
    if dst_rate < src_rate:  # anti-alias before decimation
        x = _lowpass(x, 0.5 * dst_rate / src_rate * 0.92)
    n_out = int(round(len(x) * dst_rate / src_rate))
    t = np.arange(n_out) * (src_rate / dst_rate)
    y = np.interp(t, np.arange(len(x)), x)
    if dst_rate > src_rate:  # smooth the linear-interpolation images
        y = _lowpass(y, 0.5 * src_rate / dst_rate * 0.92)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def _lowpass(x: np.ndarray, cutoff: float, taps: int = 63) -> np.ndarray:
    """FIR low-pass; ``cutoff`` as a fraction of the sample rate (0..0.5)."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    h /= h.sum()
    return np.convolve(x, h, mode="same")


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV (any rate; stereo is mixed down). Returns (samples, rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported (got {8 * w.getsampwidth()}-bit)")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.astype(np.int16, copy=False), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf for silence)."""
    if len(samples) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")


def voiced_seconds(samples: np.ndarray, rate: int, threshold_dbfs: float = -45.0,
                   frame_ms: int = 20) -> float:
    """Seconds of 20 ms frames louder than ``threshold_dbfs`` (a crude 'non-silent audio' meter)."""
    n = rate * frame_ms // 1000
    frames = len(samples) // n
    if frames == 0:
        return 0.0
    x = samples[: frames * n].astype(np.float64).reshape(frames, n)
    rms = np.sqrt(np.mean(x**2, axis=1))
    loud = rms > 32768 * 10 ** (threshold_dbfs / 20)
    return float(loud.sum()) * frame_ms / 1000
