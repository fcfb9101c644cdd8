"""Character n-gram matcher in numpy: needs no model and shrugs off ASR misspellings.

Each text becomes a TF-IDF weighted bag of hashed character 3- to 5-grams of its folded words
(plus the words run together, so "køre kort" still meets "kørekort"); similarity is the cosine to
every example, and an intent scores its best example.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

DIM = 1 << 14


def _grams(folded: str) -> list[int]:
    grams: list[int] = []
    for chunk in folded.split() + ([folded.replace(" ", "")] if " " in folded else []):
        padded = f" {chunk} "
        for n in (3, 4, 5):
            grams.extend(zlib.crc32(padded[i:i + n].encode()) % DIM for i in range(len(padded) - n + 1))
    return grams


class NgramIndex:
    """Examples as columns of a dense (DIM, n_examples) float16 matrix; queries are sparse.

    Stored gram-major so a query gathers a few contiguous rows; float16 halves the memory.
    """

    def __init__(self, folded_texts: Sequence[str], labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.intents = sorted(set(labels))
        self._label_idx = np.array([self.intents.index(lab) for lab in labels])
        rows = [np.bincount(_grams(t), minlength=DIM).astype(np.float32) for t in folded_texts]
        counts = np.vstack(rows) if rows else np.zeros((0, DIM), np.float32)
        df = (counts > 0).sum(axis=0)
        self.idf = np.log((1 + len(rows)) / (1 + df)).astype(np.float32) + 1.0
        mat = np.log1p(counts) * self.idf
        mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-9)
        self.matrix = np.ascontiguousarray(mat.T).astype(np.float16)

    def example_scores(self, folded: str) -> np.ndarray:
        grams = _grams(folded)
        if not grams:
            return np.zeros(len(self.labels), np.float32)
        idx, counts = np.unique(np.array(grams), return_counts=True)
        vals = np.log1p(counts).astype(np.float32) * self.idf[idx]
        vals /= max(float(np.linalg.norm(vals)), 1e-9)
        return vals @ self.matrix[idx].astype(np.float32)

    def scores(self, folded: str, sims: np.ndarray | None = None) -> dict[str, float]:
        """Best example cosine per intent (``sims``: this text's ``example_scores``, if known)."""
        sims = self.example_scores(folded) if sims is None else sims
        best = np.full(len(self.intents), -1.0, np.float32)
        np.maximum.at(best, self._label_idx, sims)
        return dict(zip(self.intents, best.tolist()))
