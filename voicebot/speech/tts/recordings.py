"""Recorded prompts: WAV files of a human voice, played instead of synthesized speech.

Any WAV an admin drops in works: 16-bit PCM is read with numpy; other encodings (μ-law/A-law
WAVs as Asterisk sounds often are, 8/24/32-bit, float) are converted with ``sox``.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from voicebot.speech.audio import read_wav, resample


class RecordingError(ValueError):
    """A recording cannot be read (missing, not a WAV, or an encoding sox cannot convert)."""


def load_recording(path: Path, rate: int) -> np.ndarray:
    """The recording at ``path`` as int16 mono at ``rate``."""
    if not path.is_file():
        raise RecordingError(f"{path}: recording not found")
    try:
        samples, src_rate = read_wav(path)
    except (ValueError, wave.Error, EOFError):
        return _convert_with_sox(path, rate)
    return resample(samples, src_rate, rate)


def _convert_with_sox(path: Path, rate: int) -> np.ndarray:
    sox = shutil.which("sox")
    if not sox:
        raise RecordingError(f"{path}: not 16-bit PCM, and sox (Debian package 'sox') is not installed to convert it")
    cmd = [sox, str(path), "-t", "raw", "-e", "signed-integer", "-b", "16", "-L", "-c", "1", "-r", str(rate), "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise RecordingError(f"{path}: sox took too long") from None
    if proc.returncode != 0:
        raise RecordingError(f"{path}: cannot convert: {proc.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(proc.stdout, dtype="<i2").astype(np.int16)
