"""Whisper's decoder on ONNX Runtime: CTranslate2's beam search, with cheaper steps on AVX2 CPUs.

Why: on CPUs without AVX-512/VNNI, CTranslate2 multiplies int8 matrices with oneDNN and no
pre-packed weights, so every decoder step (a handful of rows against 30 M weights) repacks all the
weights: ~13 ms a step for whisper-base at beam 2 on the 2-core AVX2 EPYC, ~70 % of a decode.
ONNX Runtime packs constant int8 weights once, at load: the same step's matrix products take
~4 ms there (docs/speech.md, "The decoder on ONNX Runtime"). The encoder, one large product per
utterance, stays on CTranslate2, where it is fast.

``OnnxDecoding`` wraps a ``ctranslate2.models.Whisper`` and replaces only ``generate`` for what
faster-whisper asks of it (beam search, temperature 0, a prompt ending in <|notimestamps|>); any
other request goes to CTranslate2 unchanged. The decoder graph is built here from the model's own
``model.bin`` (voicebot/models/ct2_file.py), with onnx's helpers, and its matrix products are
quantized to int8 (per output channel) by onnxruntime's own quantizer. The beam search mirrors
CTranslate2's (src/decoding.cc ``BeamSearch::search``, src/models/whisper.cc ``generate``): two
candidates per beam, finished hypotheses replaced by the next live candidate, scores normalized
by length, the no-repeat n-gram rule, suppressed tokens, and <|nospeech|>'s probability taken at
<|startoftranscript|>.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voicebot.errors import EngineError

log = logging.getLogger("voicebot.asr")

BUILD_VERSION = 4       # bump when the graph changes: cached builds are rebuilt
CACHE_DIR = "onnx-decoder"
HEADS_DIM = 64
LN_EPS = 1e-5


# ---------------------------------------------------------------- the graphs

def _weights(model_dir: Path) -> tuple[dict[str, np.ndarray], int, int]:
    from voicebot.models.ct2_file import read_model

    model = read_model(model_dir / "model.bin")
    if model.spec != "WhisperSpec":
        raise EngineError(f"{model_dir}: not a Whisper model ({model.spec})")
    w = {v.name: v.value for v in model.variables if v.name.startswith("decoder/")}
    for alias, name in model.aliases:
        if alias.startswith("decoder/") and name in w:
            w[alias] = w[name]
    if int(w["decoder/activation"]) != 3 or not int(w["decoder/pre_norm"]) \
            or int(w["decoder/scale_embeddings"]) or int(w["decoder/alibi"]):
        raise EngineError(f"{model_dir}: a decoder this ONNX builder does not know")
    layers = 1 + max(int(k.split("/")[1][6:]) for k in w if k.startswith("decoder/layer_")
                     and k.split("/")[1][6:].isdigit())
    return {k: np.asarray(v, dtype=np.float32) for k, v in w.items() if np.ndim(v)}, layers, \
        int(w["decoder/num_heads"])


class _Graph:
    """A little builder over onnx.helper: names, constants and weight products."""

    def __init__(self) -> None:
        self.nodes, self.inits, self.weight_nodes = [], [], []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, value, hint="c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, n_out: int = 1,
           **attrs):
        from onnx import helper

        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        node_name = self.name("node_" + op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None) -> str:
        """x @ weight.T + bias, the product marked for int8."""
        from onnx import helper

        w = self.const(np.ascontiguousarray(weight.T, dtype=np.float32), "w")
        out = self.name("mm")
        node_name = self.name("weight_matmul")
        self.nodes.append(helper.make_node("MatMul", [x, w], [out], name=node_name))
        self.weight_nodes.append(node_name)
        return out if bias is None else self.op("Add", [out, self.const(bias.astype(np.float32), "b")])

    def layer_norm(self, x: str, w: dict, prefix: str) -> str:
        return self.op("LayerNormalization", [x, self.const(w[prefix + "/gamma"]), self.const(w[prefix + "/beta"])],
                       axis=-1, epsilon=LN_EPS)



def build_graphs(model_dir: Path):
    """The fp32 ONNX graphs of the decoder: (cross, step).

    Attention is written so the big operand of every product comes first: scores are computed
    transposed, keys [.., T, 64] times the queries [.., 64, rows], and values are kept transposed
    ([.., 64, T]). A product's second operand is repacked on every call (MLAS, like oneDNN), and
    here it is the few query rows, not the whole encoder output (measured: 300 us an attention
    with onnxruntime's fused MultiHeadAttention or the usual q @ k.T, ~40 us this way)."""
    from onnx import TensorProto, helper

    w, layers, heads = _weights(model_dir)
    d = w["decoder/embeddings/weight"].shape[1]
    vocab = w["decoder/embeddings/weight"].shape[0]
    opset = [helper.make_opsetid("", 17)]

    # cross: the encoder output -> every layer's keys [B, H, T, 64] and values [B, H, 64, T]
    g = _Graph()
    enc_shape = g.const(np.array([0, -1, heads, HEADS_DIM], np.int64), "shape")
    outputs = []
    for i in range(layers):
        p = f"decoder/layer_{i}/attention/linear_1"
        kv = g.linear("enc", w[p + "/weight"], w[p + "/bias"])
        k, v = g.op("Split", [kv, g.const(np.array([d, d], np.int64))], n_out=2, axis=-1)
        g.nodes.append(helper.make_node("Transpose", [g.op("Reshape", [k, enc_shape])], [f"cross_k{i}"], perm=[0, 2, 1, 3]))
        g.nodes.append(helper.make_node("Transpose", [g.op("Reshape", [v, enc_shape])], [f"cross_v{i}"], perm=[0, 2, 3, 1]))
        outputs += [helper.make_tensor_value_info(f"cross_k{i}", TensorProto.FLOAT, ["B", heads, "T", HEADS_DIM]),
                    helper.make_tensor_value_info(f"cross_v{i}", TensorProto.FLOAT, ["B", heads, HEADS_DIM, "T"])]
    cross = helper.make_model(helper.make_graph(
        g.nodes, "whisper_cross", [helper.make_tensor_value_info("enc", TensorProto.FLOAT, ["B", "T", d])],
        outputs, g.inits), opset_imports=opset)
    cross_nodes = g.weight_nodes

    # step: new tokens (with the cache of earlier ones) -> logits
    g = _Graph()
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["N", "S"]),
              helper.make_tensor_value_info("positions", TensorProto.INT64, ["S"]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["PS", "S"])]  # transposed
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "S", vocab])]
    x = g.op("Add", [g.op("Gather", [g.const(w["decoder/embeddings/weight"], "embed"), "tokens"]),
                     g.op("Gather", [g.const(w["decoder/position_encodings/encodings"], "pos"), "positions"])])
    x_shape = g.op("Shape", [x])  # [N, S, D]
    scale = g.const(np.array(HEADS_DIM ** -0.5, np.float32), "scale")
    row_shape = g.const(np.array([0, -1, heads, HEADS_DIM], np.int64), "shape")
    # cross attention sees an utterance's rows (its beams) as more query positions of one batch
    # entry: [B, rows per utterance * S, H, 64] against that utterance's keys and values
    group_shape = g.op("Concat", [g.op("Slice", [g.op("Shape", ["cross_k0"]), g.const(np.array([0], np.int64)),
                                                g.const(np.array([1], np.int64))]),
                                  g.const(np.array([-1, heads, HEADS_DIM], np.int64))], axis=0)

    def attend(q: str, keys: str, values_t: str, shape: str, mask: str | None) -> str:
        """softmax(q k^T / 8) v, computed transposed; q [rows, S, D] -> [rows, S, D]."""
        q_t = g.op("Transpose", [g.op("Reshape", [q, shape])], perm=[0, 2, 3, 1])  # [., H, 64, S]
        scores = g.op("Mul", [g.op("MatMul", [keys, q_t]), scale])                 # [., H, T, S]
        if mask is not None:
            scores = g.op("Add", [scores, mask])
        out = g.op("MatMul", [values_t, g.op("Softmax", [scores], axis=2)])        # [., H, 64, S]
        return g.op("Reshape", [g.op("Transpose", [out], perm=[0, 3, 1, 2]), x_shape])

    half = g.const(np.array(0.5, np.float32))
    one = g.const(np.array(1.0, np.float32))
    sqrt2 = g.const(np.array(2 ** -0.5, np.float32))
    for i in range(layers):
        p = f"decoder/layer_{i}"
        inputs += [helper.make_tensor_value_info(f"past_k{i}", TensorProto.FLOAT, ["N", heads, "P", HEADS_DIM]),
                   helper.make_tensor_value_info(f"past_v{i}", TensorProto.FLOAT, ["N", heads, HEADS_DIM, "P"]),
                   helper.make_tensor_value_info(f"cross_k{i}", TensorProto.FLOAT, ["B", heads, "T", HEADS_DIM]),
                   helper.make_tensor_value_info(f"cross_v{i}", TensorProto.FLOAT, ["B", heads, HEADS_DIM, "T"])]
        outputs += [helper.make_tensor_value_info(f"present_k{i}", TensorProto.FLOAT, ["N", heads, "PS", HEADS_DIM]),
                    helper.make_tensor_value_info(f"present_v{i}", TensorProto.FLOAT, ["N", heads, HEADS_DIM, "PS"])]
        # self attention, with the cache
        h = g.layer_norm(x, w, p + "/self_attention/layer_norm")
        qkv = g.linear(h, w[p + "/self_attention/linear_0/weight"], w[p + "/self_attention/linear_0/bias"])
        q, k, v = g.op("Split", [qkv, g.const(np.array([d, d, d], np.int64))], n_out=3, axis=-1)
        k = g.op("Transpose", [g.op("Reshape", [k, row_shape])], perm=[0, 2, 1, 3])  # [N, H, S, 64]
        v = g.op("Transpose", [g.op("Reshape", [v, row_shape])], perm=[0, 2, 3, 1])  # [N, H, 64, S]
        g.nodes.append(helper.make_node("Concat", [f"past_k{i}", k], [f"present_k{i}"], axis=2))
        g.nodes.append(helper.make_node("Concat", [f"past_v{i}", v], [f"present_v{i}"], axis=3))
        att = attend(q, f"present_k{i}", f"present_v{i}", row_shape, "mask")
        x = g.op("Add", [x, g.linear(att, w[p + "/self_attention/linear_1/weight"], w[p + "/self_attention/linear_1/bias"])])
        # cross attention over the utterance's encoder output
        h = g.layer_norm(x, w, p + "/attention/layer_norm")
        q = g.linear(h, w[p + "/attention/linear_0/weight"], w[p + "/attention/linear_0/bias"])
        att = attend(q, f"cross_k{i}", f"cross_v{i}", group_shape, None)
        x = g.op("Add", [x, g.linear(att, w[p + "/attention/linear_2/weight"], w[p + "/attention/linear_2/bias"])])
        # feed-forward, exact GELU
        h = g.layer_norm(x, w, p + "/ffn/layer_norm")
        h = g.linear(h, w[p + "/ffn/linear_0/weight"], w[p + "/ffn/linear_0/bias"])
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [one, g.op("Erf", [g.op("Mul", [h, sqrt2])])])])
        x = g.op("Add", [x, g.linear(h, w[p + "/ffn/linear_1/weight"], w[p + "/ffn/linear_1/bias"])])
    x = g.layer_norm(x, w, "decoder/layer_norm")
    logits = g.linear(x, w["decoder/embeddings/weight"], None)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    step = helper.make_model(helper.make_graph(g.nodes, "whisper_step", inputs, outputs, g.inits),
                             opset_imports=opset)
    return (cross, cross_nodes), (step, g.weight_nodes), layers, heads


def _source_stamp(model_dir: Path, quantize: bool) -> str:
    import onnxruntime

    st = (model_dir / "model.bin").stat()
    return hashlib.sha256(json.dumps([BUILD_VERSION, quantize, st.st_size, int(st.st_mtime),
                                      onnxruntime.__version__]).encode()).hexdigest()[:16]


def decoder_graphs(model_dir: Path, quantize: bool = True) -> tuple[Path, Path, int, int]:
    """(cross.onnx, step.onnx, layers, heads) for ``model_dir``, built on first use (~10 s) and
    kept in ``<model_dir>/onnx-decoder/`` (a temporary directory when that is read-only).
    ``quantize``: int8 weights per output channel (as CTranslate2's int8); False: float32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    stamp = _source_stamp(model_dir, quantize)
    kind = "int8" if quantize else "float32"
    places = (model_dir / CACHE_DIR / kind, Path(tempfile.gettempdir()) / f"voicebot-{CACHE_DIR}-{kind}-{stamp}")
    for base in places:
        try:
            info = json.loads((base / "build.json").read_text())
            if info.get("stamp") == stamp:
                return base / "cross.onnx", base / "step.onnx", info["layers"], info["heads"]
        except (OSError, ValueError, KeyError):
            pass
    (cross, cross_nodes), (step, step_nodes), layers, heads = build_graphs(model_dir)
    for base in places:
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=base))  # concurrent builders never see half a file
            for model, nodes, name in ((cross, cross_nodes, "cross.onnx"), (step, step_nodes, "step.onnx")):
                if quantize:
                    quantize_dynamic(model, tmp / name, weight_type=QuantType.QInt8, per_channel=True,
                                     nodes_to_quantize=nodes, op_types_to_quantize=["MatMul"],
                                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1})
                else:
                    import onnx

                    onnx.save(model, tmp / name)
                os.replace(tmp / name, base / name)
            tmp.rmdir()
            (base / "build.json").write_text(json.dumps({"stamp": stamp, "layers": layers, "heads": heads}))
            log.info("built the ONNX decoder", extra={"path": str(base)})
            return base / "cross.onnx", base / "step.onnx", layers, heads
        except OSError as exc:
            log.warning("cannot keep the ONNX decoder in %s: %s", base, exc)
    raise EngineError(f"cannot write the ONNX decoder for {model_dir} anywhere")


# ---------------------------------------------------------------- generation

def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy waiting
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise EngineError(f"cannot load the ONNX decoder {path}: {exc}") from None


_float32: dict[str, tuple] = {}
_float32_lock = threading.Lock()


def _float32_sessions(model_dir: Path) -> tuple:
    """(cross, step) in float32 for ``model_dir``, loaded once per process (sessions are
    thread-safe)."""
    key = str(Path(model_dir).resolve())
    with _float32_lock:
        if key not in _float32:
            cross_path, step_path, _, _ = decoder_graphs(model_dir, quantize=False)
            _float32[key] = (_session(cross_path, 1), _session(step_path, 1))
        return _float32[key]


@dataclasses.dataclass
class Generation:
    """What faster-whisper reads of ctranslate2's WhisperGenerationResult."""

    sequences_ids: list
    scores: list
    no_speech_prob: float
    sequences: list = dataclasses.field(default_factory=list)
    logits: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """The special tokens' ids in the model's own vocabulary (trimmed or not)."""

    eot: int
    sot: int
    no_timestamps: int
    no_speech: int
    suppress: tuple[int, ...]        # config.json suppress_ids: what suppress_tokens=[-1] means
    suppress_begin: tuple[int, ...]  # config.json suppress_ids_begin: suppress_blank

    @classmethod
    def load(cls, model_dir: Path) -> Vocabulary:
        tokens = (model_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
        ids = {t: i for i, t in enumerate(tokens)}
        config = json.loads((model_dir / "config.json").read_text())
        no_speech = ids.get("<|nospeech|>", ids.get("<|nocaptions|>"))
        return cls(ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"],
                   no_speech, tuple(config.get("suppress_ids", ())), tuple(config.get("suppress_ids_begin", ())))


class OnnxDecoding:
    """A ctranslate2 Whisper whose ``generate`` runs the decoder on ONNX Runtime."""

    SUPPORTED = {"beam_size", "patience", "length_penalty", "repetition_penalty", "no_repeat_ngram_size",
                 "max_length", "return_scores", "return_no_speech_prob", "suppress_blank",
                 "suppress_tokens", "max_initial_timestamp_index", "sampling_topk", "sampling_temperature",
                 "num_hypotheses"}

    def __init__(self, model, model_dir: Path, threads: int = 1, quantize: bool = True) -> None:
        self._model = model
        self.vocab = Vocabulary.load(model_dir)
        cross_path, step_path, self.layers, self.heads = decoder_graphs(model_dir, quantize)
        self._step = _session(step_path, threads)
        # The once-per-utterance passes (the prompt, and the encoder output's keys and values) run
        # in float32: onnxruntime quantizes a product's input with one scale for all its rows
        # (CTranslate2: one per row), and over the prompt's ~15 rows that blurred <|nospeech|>'s
        # probability, read there (silence: 0.43 against CTranslate2's 0.62, and a transcript
        # instead of none). They cost ~20-60 ms a decode; one set serves every model copy.
        if quantize:
            self._cross, self._prompt_step = _float32_sessions(model_dir)
        else:
            self._cross, self._prompt_step = _session(cross_path, threads), self._step
        self.fallbacks = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):  # encode, detect_language, align, is_multilingual, ...
        return getattr(self._model, name)

    def generate(self, features, prompts, *args, **kwargs):
        enc = None
        if not args and self._handles(prompts, kwargs):
            enc = np.asarray(features, dtype=np.float32)  # the encoder's output, on the CPU
        if enc is None or enc.ndim != 3 or enc.shape[0] != len(prompts):
            with self._lock:
                self.fallbacks += 1
            return self._model.generate(features, prompts, *args, **kwargs)
        return self._generate(enc, list(prompts[0]), kwargs)

    def _handles(self, prompts, kw) -> bool:
        if not prompts or set(kw) - self.SUPPORTED or kw.get("sampling_topk", 1) != 1 \
                or kw.get("repetition_penalty", 1) != 1 or kw.get("num_hypotheses", 1) != 1 \
                or kw.get("patience", 1) != 1 or kw.get("length_penalty", 1) != 1:
            return False
        first = list(prompts[0])
        if any(list(p) != first for p in prompts) or self.vocab.sot not in first:
            return False
        return first[-1] == self.vocab.no_timestamps and self._prompt_length(first) == len(first)

    def _prompt_length(self, prompt: list[int]) -> int:
        i = prompt.index(self.vocab.sot)
        while i < len(prompt) and self.vocab.sot <= prompt[i] <= self.vocab.no_timestamps:
            i += 1
        return i

    def _run_step(self, tokens: np.ndarray, start: int, past, cross, session=None) -> tuple[np.ndarray, list]:
        rows, n = tokens.shape
        p = past[0].shape[2]
        mask = np.zeros((p + n, n), np.float32)  # [key, query]: causal among the new tokens
        if n > 1:
            mask[p:] = np.tril(np.full((n, n), -np.inf, np.float32), -1)
        feed = {"tokens": tokens.astype(np.int64), "positions": np.arange(start, start + n, dtype=np.int64),
                "mask": mask}
        for i in range(self.layers):
            feed[f"past_k{i}"], feed[f"past_v{i}"] = past[2 * i], past[2 * i + 1]
            feed[f"cross_k{i}"], feed[f"cross_v{i}"] = cross[2 * i], cross[2 * i + 1]
        out = (session or self._step).run(None, feed)
        return out[0], out[1:]

    def _generate(self, enc: np.ndarray, prompt: list[int], kw) -> list[Generation]:
        v = self.vocab
        batch = enc.shape[0]
        beam = int(kw.get("beam_size", 5))
        ngram = int(kw.get("no_repeat_ngram_size", 0))
        cross = self._cross.run(None, {"enc": enc})
        sot_index = prompt.index(v.sot)
        head, start_id = prompt[:-1], prompt[-1]
        past = [np.zeros((batch, self.heads, 0, HEADS_DIM), np.float32),  # keys
                np.zeros((batch, self.heads, HEADS_DIM, 0), np.float32)] * self.layers  # values, transposed
        logits, past = self._run_step(np.tile(np.array(head, np.int64), (batch, 1)), 0, past, cross,
                                      self._prompt_step)
        no_speech = _softmax(logits[:, sot_index])[:, v.no_speech]
        start_step = len(head)
        total = int(kw.get("max_length", 448))
        max_steps = min(total // 2, total - start_step)
        disable = set()
        for t in kw.get("suppress_tokens", [-1]) or []:
            disable.update(v.suppress if t == -1 else (t,))
        disable_all = np.array(sorted(i for i in disable if 0 <= i < logits.shape[-1]), np.int64)
        disable_begin = np.array(v.suppress_begin if kw.get("suppress_blank", True) else (), np.int64)
        results: list[Generation | None] = [None] * batch
        hyps: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        alive = list(range(batch))                       # original batch index per live utterance
        tokens = np.full((batch,), start_id, np.int64)   # the last token of each row
        scores = None                                    # cumulative log-probs per row
        seqs = np.zeros((batch, 0), np.int64)            # generated tokens per row
        candidates = 2 * beam
        for step in range(max_steps):
            expanded = step > 0
            logits, past = self._run_step(tokens[:, None], start_step + step, past, cross)
            logits = logits[:, -1].astype(np.float32, copy=True)
            if len(disable_all):
                logits[:, disable_all] = -np.inf
            if step == 0 and len(disable_begin):
                logits[:, disable_begin] = -np.inf
            if ngram and seqs.shape[1] >= ngram:
                for row, seq in enumerate(seqs):
                    for t in _ngram_bans(seq, ngram):
                        logits[row, t] = -np.inf
            logp = _log_softmax(logits)
            if scores is not None:
                logp += scores[:, None]
            cur = len(alive)
            vocab = logp.shape[-1]
            flat = logp.reshape(cur, -1)
            top = np.argpartition(-flat, candidates - 1, axis=1)[:, :candidates]
            order = np.argsort(-np.take_along_axis(flat, top, 1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, 1)
            top_scores = np.take_along_axis(flat, top, 1)
            top_ids = top % vocab
            origin = (np.arange(cur)[:, None] * beam + top // vocab) if expanded else \
                np.repeat(np.arange(cur)[:, None], candidates, 1)
            cand_seqs = np.concatenate([seqs[origin.reshape(-1)], top_ids.reshape(-1, 1)], 1) \
                .reshape(cur, candidates, -1)
            last = step + 1 == max_steps
            keep_rows, keep_batches = [], []
            for i in range(cur):
                b = alive[i]
                nxt = beam
                chosen = []
                for k in range(beam):
                    pick = k
                    if top_ids[i, k] == v.eot or last:
                        end = step if top_ids[i, k] == v.eot else step + 1
                        hyps[b].append((float(top_scores[i, k]), cand_seqs[i, k, :end].tolist()))
                        for j in range(nxt, candidates):
                            if top_ids[i, j] != v.eot:
                                pick, nxt = j, j + 1
                                break
                    chosen.append(pick)
                if last or len(hyps[b]) >= beam:
                    best = max(((s / max(1, len(h)), h) for s, h in hyps[b]), key=lambda t: t[0])
                    results[b] = Generation([best[1]], [best[0]], float(no_speech[b]))
                else:
                    keep_batches.append(i)
                    keep_rows.append([i * candidates + j for j in chosen])
            if not keep_batches:
                break
            sel = np.array(keep_rows, np.int64).reshape(-1)           # into the flat candidates
            flat_origin = origin.reshape(-1)[sel]                     # rows of the state to keep
            tokens = top_ids.reshape(-1)[sel]
            scores = top_scores.reshape(-1)[sel]
            seqs = cand_seqs.reshape(cur * candidates, -1)[sel]
            past = [p[flat_origin] for p in past]
            if len(keep_batches) != cur:
                cross = [c[keep_batches] for c in cross]
            alive = [alive[i] for i in keep_batches]
        return [r if r is not None else Generation([[]], [0.0], float(no_speech[b]))
                for b, r in enumerate(results)]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    shifted = x - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _ngram_bans(seq: np.ndarray, n: int) -> set[int]:
    """Tokens that would repeat an n-gram of ``seq`` (CTranslate2's NoRepeatNgram)."""
    tail = seq[len(seq) - n + 1:].tolist()
    s = seq.tolist()
    bans = set()
    for i in range(len(s) - n + 1):
        if s[i:i + n - 1] == tail:
            bans.add(s[i + n - 1])
    return bans


def use_onnx_decoder(models, model_dir: Path, quantize: bool = True) -> bool:
    """Give each (faster_whisper.WhisperModel, threads) the ONNX decoder. A decoder that cannot
    be built or loaded is logged and CTranslate2 decodes as before: the bot keeps answering."""
    models = [(m, t) for m, t in models if m is not None]
    try:
        for model, threads in models:
            model.model = OnnxDecoding(model.model, Path(model_dir), threads, quantize)
        return True
    except Exception as exc:  # onnx / onnxruntime failures have many types; none may stop the bot
        log.warning("the ONNX decoder is unavailable, CTranslate2 decodes instead: %s", exc)
        for model, _ in models:
            if isinstance(model.model, OnnxDecoding):
                model.model = model.model._model
        return False
