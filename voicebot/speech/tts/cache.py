"""Disk cache of synthesized speech, keyed by engine settings, output rate and text.

A call never waits for synthesis of fixed text: ``voicebot prompts build`` fills the cache ahead.
Files are 16-bit mono WAVs at the cache's rate, named by the SHA-256 of the key, written to a
temporary file and renamed into place, so a reader (another call, another bot instance sharing
the directory) never sees half a file. A file that cannot be read is treated as a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import unicodedata
import wave
from pathlib import Path

import numpy as np

from voicebot.speech.audio import read_wav, resample
from voicebot.speech.tts.base import Synthesized, TTSEngine

log = logging.getLogger(__name__)


def normalize_text(text: str) -> str:
    """The text as the key sees it: NFC, whitespace runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class TTSCache:
    """Synthesized audio for one engine at one output rate (the call's rate)."""

    def __init__(self, engine: TTSEngine, directory: Path, rate: int) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self.rate = rate
        self.hits = 0
        self.misses = 0

    def key(self, text: str) -> str:
        parts = dict(self.engine.cache_key_parts(), rate=self.rate, text=normalize_text(text))
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def path(self, text: str) -> Path:
        k = self.key(text)
        return self.directory / k[:2] / f"{k}.wav"

    def has(self, text: str) -> bool:
        """Whether ``text`` is cached (without reading or synthesizing it)."""
        return self.path(text).is_file()

    def load(self, text: str) -> np.ndarray | None:
        """The cached audio for ``text``, or None on a miss (an unreadable file counts as one)."""
        path = self.path(text)
        try:
            samples, rate = read_wav(path)
        except FileNotFoundError:
            return None
        except (OSError, EOFError, ValueError, wave.Error) as exc:
            log.warning("unreadable TTS cache file, synthesizing again", extra={"file": str(path), "error": str(exc)})
            return None
        if rate != self.rate:
            log.warning("TTS cache file has the wrong rate, synthesizing again", extra={"file": str(path)})
            return None
        return samples

    def get(self, text: str) -> np.ndarray:
        """Audio for ``text`` at the cache's rate; synthesizes and stores it on a miss (blocking)."""
        samples = self.load(text)
        if samples is not None:
            self.hits += 1
            return samples
        self.misses += 1
        return self.store(text, self.engine.synthesize(normalize_text(text)))

    async def aget(self, text: str) -> np.ndarray:
        """``get`` in a worker thread, for the event loop."""
        return await asyncio.to_thread(self.get, text)

    def store(self, text: str, synthesized: Synthesized) -> np.ndarray:
        """Resample ``synthesized`` to the cache's rate, write it atomically, return the samples."""
        samples = resample(synthesized.samples, synthesized.rate, self.rate)
        _write_atomic(self.path(text), samples, self.rate)
        return samples


def _write_atomic(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the whole new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
