"""Closed-set recognition without a model: candidates, silence normalization, selection, and the
listener routing an utterance to ``score_choices`` while a closed question is expected."""

from __future__ import annotations

import concurrent.futures
import math

import numpy as np
import pytest

from voicebot.speech.asr import Choice, ClosedResult
from voicebot.speech.asr.base import SegmentEngine
from voicebot.speech.asr.closed import (NONE, Candidate, build_candidates, evidence, log_likelihood,
                                        phrase_variants, select, window_seconds)
from voicebot.speech.asr.recognizer import Listener, Recognizer
from voicebot.speech.endpointer import Endpointer, UtteranceEnded
from voicebot.speech.vad import VadConfig

YES_NO = [Choice("yes", ("ja", "ja tak")), Choice("no", ("nej",))]


def test_phrase_variants_cover_whispers_spellings():
    assert phrase_variants("ja") == [" ja", " ja."]
    assert phrase_variants("  Nej  tak. ") == [" nej tak", " nej tak.", " Nej tak", " Nej tak."]
    assert phrase_variants("ja , tak") == [" ja, tak", " ja, tak."]
    assert phrase_variants(" . ") == []


def test_choice_needs_phrases_and_accepts_one_string():
    assert Choice("pas", "pas").phrases == ("pas",)
    assert Choice("no", ["nej", "nej tak"]).phrases == ("nej", "nej tak")
    with pytest.raises(ValueError):
        Choice("yes", ())
    with pytest.raises(ValueError):
        Choice("", ("ja",))


def test_build_candidates_keeps_keys_and_phrases():
    cands = build_candidates(YES_NO)
    assert len(cands) == 6
    assert {c.key for c in cands} == {"yes", "no"}
    assert Candidate("yes", "ja tak", " ja tak.") in cands
    assert all(c.phrase in ("ja", "ja tak", "nej") for c in cands)


def test_build_candidates_rejects_a_phrase_in_two_choices():
    with pytest.raises(ValueError, match="both"):
        build_candidates([Choice("yes", ("ja",)), Choice("maybe", ("Ja",))])
    with pytest.raises(ValueError):
        build_candidates([])


def test_log_likelihood_and_silence_normalization():
    assert log_likelihood([0.5, 0.5]) == pytest.approx(2 * math.log(0.5))
    assert math.isfinite(log_likelihood([0.0, 1.0]))  # a zero probability stays finite
    # a generic phrase is likely on silence too: the audio must raise it to count
    raw = [-2.0, -6.0]          # "ja" looks better on raw likelihood...
    silence = [-1.5, -12.0]     # ...but only because it is likely anyway
    assert evidence(raw, silence) == [-0.5, 6.0]
    with pytest.raises(ValueError):
        evidence([1.0], [1.0, 2.0])


def test_select_takes_each_choice_by_its_best_spelling():
    cands = build_candidates(YES_NO)
    scores = [0.0] * len(cands)
    scores[cands.index(Candidate("yes", "ja tak", " ja tak."))] = 6.0
    scores[cands.index(Candidate("no", "nej", " nej"))] = 4.0
    result = select(cands, scores, none_score=3.0, elapsed_s=0.01)
    assert (result.key, result.text) == ("yes", "ja tak")
    assert result.scores == {"yes": 6.0, "no": 4.0, NONE: 3.0}
    shares = np.exp([6.0, 4.0, 3.0]) / np.exp([6.0, 4.0, 3.0]).sum()
    assert result.confidence == pytest.approx(shares[0])
    assert result.elapsed_s == 0.01


def test_select_answers_none_when_no_choice_beats_none_score():
    cands = build_candidates(YES_NO)
    result = select(cands, [2.0] * len(cands), none_score=3.0)
    assert result.key is None and result.text == ""
    assert result.confidence > 0.5


def test_closed_result_reads_as_a_transcript():
    asr = ClosedResult("no", "nej", 0.8, {"no": 5.0}, 0.02).as_asr_result(1.5, "whisper")
    assert (asr.text, asr.confidence, asr.audio_s, asr.decode_s) == ("nej", 0.8, 1.5, 0.02)
    assert ClosedResult(None, "", 0.9, {}, 0.0).as_asr_result(1.0).confidence == 0.0


def test_window_is_whole_seconds_of_speech_plus_padding():
    assert window_seconds(16000, 2.0) == 3
    assert window_seconds(16001, 2.0) == 4
    assert window_seconds(0, 0.0) == 1
    assert window_seconds(16000 * 60, 2.0) == 30


# --- the listener -------------------------------------------------------------------------


class ClosedFake(SegmentEngine):
    """Transcribes "free" and picks the choice whose index is the utterance's first sample."""

    name, closed_sets = "fake-closed", True

    def __init__(self) -> None:
        super().__init__(None)
        self.scored: list[tuple[int, tuple[str, ...]]] = []

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        return "free", 0.5

    def score_choices(self, samples, rate, choices) -> ClosedResult:
        self.scored.append((len(samples), tuple(c.key for c in choices)))
        index = int(np.max(samples)) - 1
        if index >= len(choices):
            return ClosedResult(None, "", 0.7, {}, 0.001)
        return ClosedResult(choices[index].key, choices[index].phrases[0], 0.9, {}, 0.001)


class PlainFake(ClosedFake):
    name, closed_sets = "fake-plain", False


class ScriptedVad:
    def is_speech(self, f: np.ndarray) -> bool:
        return bool(f[0] != 0)


def utterance(value: int) -> list[np.ndarray]:
    return [np.zeros(320, np.int16)] * 5 + [np.full(320, value, np.int16)] * 20 + [np.zeros(320, np.int16)] * 30


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(2) as p:
        yield p


async def listen(listener: Listener, frames: list[np.ndarray]) -> list[str]:
    texts = []
    for f in frames:
        for event in listener.push(f):
            if isinstance(event, UtteranceEnded):
                texts.append((await listener.result()).text)
    return texts


def make_listener(engine, pool) -> Listener:
    cfg = VadConfig(pre_roll_ms=100, end_silence_ms=400, tail_ms=100)
    return Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, pool, 16000))


async def test_listener_scores_utterances_while_a_closed_set_is_expected(pool):
    engine = ClosedFake()
    listener = make_listener(engine, pool)
    assert await listen(listener, utterance(1)) == ["free"]
    listener.expect(YES_NO)
    # the third is none of them: transcribed freely, so a new question is not lost
    assert await listen(listener, utterance(2) + utterance(1) + utterance(3)) == ["nej", "ja", "free"]
    assert [keys for _, keys in engine.scored] == [("yes", "no")] * 3
    assert all(n >= 20 * 320 for n, _ in engine.scored)  # the whole utterance was scored
    listener.expect(None)
    assert await listen(listener, utterance(1)) == ["free"]
    assert len(engine.scored) == 3


async def test_listener_keeps_the_set_in_force_when_the_utterance_ended(pool):
    engine = ClosedFake()
    listener = make_listener(engine, pool)
    listener.expect([Choice("pas", ("pas",)), Choice("korekort", ("kørekort",))])
    for f in utterance(2):
        for event in listener.push(f):
            if isinstance(event, UtteranceEnded):
                listener.expect(None)  # the dialogue moves on before collecting the result
    assert (await listener.result()).text == "kørekort"


async def test_a_malformed_set_falls_back_to_transcription(pool, caplog):
    engine = ClosedFake()
    listener = make_listener(engine, pool)
    listener.expect([Choice("yes", ("ja",)), Choice("maybe", ("ja",))])
    assert listener.expecting is None and "closed set ignored" in caplog.text
    assert await listen(listener, utterance(1)) == ["free"]


async def test_engines_without_closed_sets_transcribe_as_before(pool):
    engine = PlainFake()
    listener = make_listener(engine, pool)
    listener.expect(YES_NO)
    assert listener.expecting is None
    assert await listen(listener, utterance(1)) == ["free"]
    assert engine.scored == []


class TranscribeOnly(SegmentEngine):
    name = "fake-transcribe"

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        return "free", 0.5


def test_engines_default_to_no_closed_sets():
    engine = TranscribeOnly(None)
    assert engine.closed_sets is False
    with pytest.raises(NotImplementedError):
        engine.score_choices(np.zeros(10, np.int16), 16000, YES_NO)
