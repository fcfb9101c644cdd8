"""Read and write CTranslate2's ``model.bin`` (binary version 6), for models derived here.

The format is CTranslate2's own (``python/ctranslate2/specs/model_spec.py``, ``_serialize``): a
header, then each variable as name, rank, dims, dtype and raw bytes, then the aliases. Reading and
writing back an unchanged model gives the same bytes (tests/unit/test_whisper_trim.py).
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np

from voicebot.errors import ModelError

BINARY_VERSION = 6
# the DataType enum of include/ctranslate2/types.h, in order; bfloat16 is kept as raw 16-bit words
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
         "float16": np.float16, "bfloat16": np.uint16}


@dataclasses.dataclass
class Variable:
    name: str
    dtype: str           # one of DTYPES
    value: np.ndarray    # shape () for a scalar


@dataclasses.dataclass
class ModelFile:
    spec: str                      # e.g. "WhisperSpec"
    revision: int
    variables: list[Variable]
    aliases: list[tuple[str, str]]  # (alias, variable name)

    def variable(self, name: str) -> Variable:
        for var in self.variables:
            if var.name == name:
                return var
        raise ModelError(f"the model has no variable {name!r}")


def read_model(path: Path) -> ModelFile:
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal offset
        length = take("H")  # includes the trailing NUL
        text = data[offset:offset + length - 1].decode("utf-8")
        offset += length
        return text

    try:
        version = take("I")
        if version != BINARY_VERSION:
            raise ModelError(f"{path}: CTranslate2 binary version {version}, this reader knows "
                             f"{BINARY_VERSION}")
        spec, revision = string(), take("I")
        variables = []
        for _ in range(take("I")):
            name = string()
            dims = [take("I") for _ in range(take("B"))]
            dtype = DTYPES[take("B")]
            size = take("I")
            item = np.dtype(NUMPY[dtype]).itemsize
            value = np.frombuffer(data, NUMPY[dtype], size // item, offset).reshape(dims)
            offset += size
            variables.append(Variable(name, dtype, value))
        aliases = [(string(), string()) for _ in range(take("I"))]
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a CTranslate2 model file ({exc})") from None
    return ModelFile(spec, revision, variables, aliases)


def write_model(model: ModelFile, path: Path) -> None:
    with open(path, "wb") as out:
        def string(text: str) -> None:
            raw = text.encode("utf-8")
            out.write(struct.pack("H", len(raw) + 1) + raw + b"\0")

        out.write(struct.pack("I", BINARY_VERSION))
        string(model.spec)
        out.write(struct.pack("I", model.revision))
        out.write(struct.pack("I", len(model.variables)))
        for var in model.variables:
            string(var.name)
            out.write(struct.pack("B", var.value.ndim))
            out.write(struct.pack(f"{var.value.ndim}I", *var.value.shape))
            raw = np.ascontiguousarray(var.value, dtype=NUMPY[var.dtype]).tobytes()
            out.write(struct.pack("B", DTYPES.index(var.dtype)) + struct.pack("I", len(raw)))
            out.write(raw)
        out.write(struct.pack("I", len(model.aliases)))
        for alias, name in model.aliases:
            string(alias)
            string(name)
