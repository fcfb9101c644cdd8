"""The id mapping between faster-whisper (original ids) and a trimmed Whisper model (its own ids).

A stand-in CTranslate2 model records what it is given; the real trimmed model is exercised in
tests/integration/test_whisper_trim.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from voicebot.errors import EngineError
from voicebot.speech.asr.whisper_vocab import TrimmedWhisper, token_ids

# original ids kept by the "trimmed model": new id = position in this list
KEPT = [0, 1, 2, 7, 40, 41, 100, 200, 201]


class Tokenizer:
    """Byte-level pieces: id 300 is "ab", which the model lacks; "a" is 40 and "b" is 41."""
    pieces = {40: "a", 41: "b", 300: "ab", 301: "é"}

    def id_to_token(self, i):
        return self.pieces.get(i)

    def token_to_id(self, piece):
        return {v: k for k, v in self.pieces.items()}.get(piece)


class Inner:
    is_multilingual = True

    def __init__(self):
        self.calls = []

    def generate(self, features, prompts, **kwargs):
        self.calls.append((prompts, kwargs))
        return [SimpleNamespace(sequences=[["x"]], sequences_ids=[[3, 6, 8]], scores=[-0.5],
                                no_speech_prob=0.1, logits=[])]

    def align(self, features, start, texts, frames):
        self.calls.append((start, texts, frames))
        return ["aligned"]


def test_prompts_go_in_as_model_ids_and_results_come_back_as_original_ids():
    inner = Inner()
    model = TrimmedWhisper(inner, KEPT, Tokenizer())
    [result] = model.generate("features", [[200, 201, 7]], beam_size=2, suppress_tokens=[-1, 1, 999])
    prompts, kwargs = inner.calls[0]
    assert prompts == [[7, 8, 3]]
    assert kwargs["suppress_tokens"] == [-1, 1]      # 999 is not in the model: nothing to suppress
    assert kwargs["beam_size"] == 2
    assert result.sequences_ids == [[7, 100, 201]]
    assert (result.scores, result.no_speech_prob) == ([-0.5], 0.1)
    assert model.is_multilingual                      # everything else passes through


def test_without_suppress_tokens_the_model_default_applies():
    inner = Inner()
    TrimmedWhisper(inner, KEPT, Tokenizer()).generate("f", [[0]])
    assert "suppress_tokens" not in inner.calls[0][1]


def test_a_token_the_model_lacks_is_spelled_with_its_characters():
    inner = Inner()
    model = TrimmedWhisper(inner, KEPT, Tokenizer())
    assert model.to_model([300, 7]) == [4, 5, 3]     # "ab" -> "a" "b"
    model.align("f", [200], [[300], [41]], 50)
    assert inner.calls[0] == ([7], [[4, 5], [5]], 50)


def test_a_token_that_cannot_be_spelled_is_a_clear_error():
    model = TrimmedWhisper(Inner(), KEPT, Tokenizer())
    with pytest.raises(EngineError, match="rebuild"):
        model.to_model([301])                         # "é" is not kept


def test_token_ids_file(tmp_path):
    assert token_ids(tmp_path) is None                # a full model
    (tmp_path / "token_ids.json").write_text("[1, 2, 3]")
    assert token_ids(tmp_path) == [1, 2, 3]
    (tmp_path / "token_ids.json").write_text('{"a": 1}')
    with pytest.raises(EngineError, match="rebuild"):
        token_ids(tmp_path)
