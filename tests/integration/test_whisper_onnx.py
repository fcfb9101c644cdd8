"""Whisper's decoder on ONNX Runtime (voicebot/speech/asr/whisper_onnx.py), on the real model.

The proof that the graph and the beam search are CTranslate2's: in float32, where neither side
quantizes, both give the same transcripts of real Danish, token for token. In int8 (the default)
the two quantize differently, so the check there is the word error rate; the speed is measured by
`voicebot eval asr` and the benchmarks (docs/speech.md), not here.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration.test_whisper_trim import _clips, installed, word_error_rate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trimmed():
    return installed("whisper-base-da")


def _engine(**kw):
    from voicebot.speech.asr.whisper import WhisperConfig, WhisperEngine

    return WhisperEngine(WhisperConfig(model="whisper-base-da", solo_threads=0, **kw))


def test_float32_decoder_matches_ctranslate2_token_for_token(trimmed):
    from voicebot.speech.asr.whisper_onnx import OnnxDecoding

    onnx_engine = _engine(compute_type="float32", decoder="onnx")
    ct2_engine = _engine(compute_type="float32", decoder="ctranslate2")
    decoding = onnx_engine.model.model._model  # TrimmedWhisper around the ONNX decoding
    assert isinstance(decoding, OnnxDecoding)
    for samples, rate, _text in _clips(6):
        for beam, pad in ((5, 5.0), (2, 1.0)):
            onnx_engine.config.beam_size = ct2_engine.config.beam_size = beam
            onnx_engine.config.window_pad_s = ct2_engine.config.window_pad_s = pad
            ours, ours_conf = onnx_engine.decode(samples, rate)
            theirs, theirs_conf = ct2_engine.decode(samples, rate)
            assert ours == theirs and ours
            assert ours_conf == pytest.approx(theirs_conf, abs=2e-3)
    assert decoding.fallbacks == 0  # every decode ran on ONNX Runtime


def test_int8_decoder_transcribes_danish_as_well(trimmed):
    clips = _clips(10)
    wer = {decoder: word_error_rate(_engine(decoder=decoder), clips) for decoder in ("ctranslate2", "onnx")}
    print(wer)
    assert wer["onnx"] <= wer["ctranslate2"] + 0.05


def test_silence_and_hiss_give_no_text_with_the_prompt(trimmed):
    # the prompt pass runs in float32: quantized over the prompt's rows, <|nospeech|>'s
    # probability on silence fell from CTranslate2's 0.62 to 0.43 and "Københavns Kommune." came out
    from voicebot.speech.asr.whisper_onnx import OnnxDecoding

    engine = _engine(prompt="Jeg ringer til Borgerservice i Københavns Kommune.")
    assert isinstance(engine.model.model._model, OnnxDecoding)
    assert engine.decode(np.zeros(8000 * 3, np.int16), 8000) == ("", 0.0)
    hiss = (np.random.default_rng(3).standard_normal(8000 * 3) * 200).astype(np.int16)
    assert len(engine.decode(hiss, 8000)[0].split()) <= 2


def test_requests_it_does_not_handle_go_to_ctranslate2(trimmed):
    engine = _engine()
    decoding = engine.model.model._model
    samples, rate, _ = _clips(1)[0]
    # sampling at a temperature (faster-whisper's fallback) is CTranslate2's
    from voicebot.speech.audio import resample

    audio = resample(samples, rate, 16000).astype(np.float32) / 32768
    segments, _ = engine.model.transcribe(audio, language="da",
                                          temperature=0.5, beam_size=1, without_timestamps=True)
    assert " ".join(s.text for s in segments).strip()
    assert decoding.fallbacks >= 1


def test_a_decoder_that_cannot_be_built_leaves_ctranslate2_in_place(trimmed, tmp_path, caplog):
    from voicebot.speech.asr.whisper_onnx import use_onnx_decoder

    engine = _engine(decoder="ctranslate2")
    before = engine.model.model
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00garbage")
    assert use_onnx_decoder([(engine.model, 1)], tmp_path) is False
    assert engine.model.model is before
    assert "CTranslate2 decodes instead" in caplog.text
    samples, rate, _ = _clips(1)[0]
    assert engine.decode(samples, rate)[0]


def test_no_repeat_ngram_bans_what_ctranslate2_bans():
    from voicebot.speech.asr.whisper_onnx import _ngram_bans

    seq = np.array([5, 6, 7, 5, 6, 9, 5, 6])
    assert _ngram_bans(seq, 3) == {7, 9}      # "5 6" was followed by 7 and by 9
    assert _ngram_bans(seq, 4) == set()       # "9 5 6" never occurred before
    assert _ngram_bans(np.array([1, 1, 1]), 2) == {1}
