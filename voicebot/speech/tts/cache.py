"""Cache of synthesized speech, keyed by engine settings, output rate and text.

A call never waits for synthesis of fixed text: ``voicebot prompts build`` fills the cache ahead.
Files are 16-bit mono WAVs at the cache's rate, named by the SHA-256 of the key, written to a
temporary file and renamed into place, so a reader (another call, another bot instance sharing
the directory) never sees half a file. A file that cannot be read is treated as a miss.

**Only known lines go to disk.** A line is known when it was declared with ``declare_known`` (the
fixed prompts, and every line ``prebuild`` synthesizes: the dialogue's ``known_lines``, which are
never built from what a caller said). Any other text — a sentence with a queue position, or one
that could carry a caller's words or numbers — is synthesized in memory and kept only in a small
LRU (``memory_items`` entries), so nothing a caller said can outlive the call on disk, and the
directory cannot grow with every dynamic sentence.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
import threading
import unicodedata
import wave
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import numpy as np

from voicebot.speech.audio import read_wav, resample
from voicebot.speech.tts.base import Synthesized, TTSEngine

log = logging.getLogger(__name__)

#: dynamic lines kept in memory per cache (a few MB at call rates)
MEMORY_ITEMS = 128


def normalize_text(text: str) -> str:
    """The text as the key sees it: NFC, whitespace runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class TTSCache:
    """Synthesized audio for one engine at one output rate (the call's rate)."""

    def __init__(self, engine: TTSEngine, directory: Path, rate: int, *, known: Iterable[str] = (),
                 memory_items: int = MEMORY_ITEMS) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self.rate = rate
        self.hits = 0  # served without synthesis (from disk or memory)
        self.misses = 0
        self.memory_items = memory_items
        self._known: set[str] = set()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.declare_known(known)

    def declare_known(self, texts: Iterable[str]) -> None:
        """Mark ``texts`` as fixed lines (not built from caller input): they may be stored on disk."""
        normalized = {normalize_text(t) for t in texts}
        with self._lock:
            self._known |= normalized

    def is_known(self, text: str) -> bool:
        return normalize_text(text) in self._known

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
        """Audio for ``text`` at the cache's rate (blocking). A known line is read from disk, or
        synthesized and stored there; any other text is synthesized in memory and kept only in
        the bounded in-memory LRU, never written to disk."""
        if not self.is_known(text):
            return self._get_dynamic(text)
        samples = self.load(text)
        if samples is not None:
            self.hits += 1
            return samples
        self.misses += 1
        return self.store(text, self.engine.synthesize(normalize_text(text)))

    def _get_dynamic(self, text: str) -> np.ndarray:
        key = self.key(text)
        with self._lock:
            samples = self._memory.get(key)
            if samples is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return samples
        self.misses += 1
        synthesized = self.engine.synthesize(normalize_text(text))
        samples = resample(synthesized.samples, synthesized.rate, self.rate)
        samples.setflags(write=False)  # shared between calls
        with self._lock:
            self._memory[key] = samples
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)
        return samples

    async def aget(self, text: str) -> np.ndarray:
        """``get`` in a worker thread, for the event loop."""
        return await asyncio.to_thread(self.get, text)

    def store(self, text: str, synthesized: Synthesized) -> np.ndarray:
        """Resample ``synthesized`` to the cache's rate, write it atomically, return the samples.
        For fixed lines only (``prebuild``, ``get`` of a known line): this writes ``text``'s audio
        to disk whatever it says."""
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
