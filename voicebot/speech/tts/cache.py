"""Disk cache of synthesized speech, keyed by engine settings, output rate and text.

A call never waits for synthesis of fixed text: ``voicebot prompts build`` fills the cache ahead.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from voicebot.speech.audio import read_wav, resample, write_wav
from voicebot.speech.tts.base import TTSEngine


class TTSCache:
    def __init__(self, engine: TTSEngine, directory: Path, rate: int) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self.rate = rate
        self.hits = 0
        self.misses = 0

    def key(self, text: str) -> str:
        parts = dict(self.engine.cache_key_parts(), rate=self.rate, text=" ".join(text.split()))
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def path(self, text: str) -> Path:
        k = self.key(text)
        return self.directory / k[:2] / f"{k}.wav"

    def get(self, text: str) -> np.ndarray:
        """Audio for ``text`` at the cache's rate; synthesizes and stores it on a miss (blocking)."""
        path = self.path(text)
        if path.exists():
            self.hits += 1
            samples, _ = read_wav(path)
            return samples
        self.misses += 1
        out = self.engine.synthesize(text)
        samples = resample(out.samples, out.rate, self.rate)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_wav(tmp, samples, self.rate)
        os.replace(tmp, path)  # atomic: concurrent readers never see half a file
        return samples

    async def aget(self, text: str) -> np.ndarray:
        return await asyncio.to_thread(self.get, text)
