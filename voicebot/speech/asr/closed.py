"""Closed-set recognition: score only the expected answers against the audio.

Free transcription of a short Danish "ja" by whisper-base often fails ("Jeg ..."), but asking the
decoder how likely each expected phrase is, given the audio (teacher forcing), is robust and cheap
(DESIGN.md §5): encode the utterance once, then run the decoder over every candidate's tokens in
one batch (CTranslate2 ``Whisper.align``, whose per-token probabilities are the score).

Raw likelihoods favour short, generic phrases, so each candidate's evidence is its log-likelihood
on the audio minus its log-likelihood on silence of the same length (cached: silence does not
change). "None of them" competes as a choice with a fixed evidence (``none_score``, in nats), so
an unrelated answer, noise or silence is not forced into a choice, and the confidence is the
winner's softmax share among the choices and "none".

A free greedy transcript as a "filler" competitor was tried and dropped: on real speech the
greedy path always out-scores the reference transcript, so it rejected right answers (nst-da
in-set accuracy 1.0 -> 0.3); a fixed ``none_score`` of 3 nats separated the real sets best.

The pure parts (candidates, normalization, selection) are separate from the model so they are
unit-tested without it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voicebot.speech.asr.base import Choice, ClosedResult

RATE = 16000
FRAMES_PER_SECOND = 100          # Whisper mel frames (10 ms hop)
MAX_SECONDS = 30                 # Whisper's window
MIN_PROB = 1e-10                 # floor so a zero probability stays finite
SILENCE_CACHE_MAX = 20000        # silence scores kept (a call uses a few fixed sets)
NONE = ""                        # the key of "none of them" in ``ClosedResult.scores``


@dataclass(frozen=True)
class Candidate:
    """One way a choice may be written by the decoder (casing and a final full stop vary)."""

    key: str
    phrase: str      # as the choice spells it (what the dialogue receives)
    text: str        # as scored, with Whisper's leading space


def phrase_variants(phrase: str) -> list[str]:
    """Spellings to score for ``phrase``: lower case (and its own spelling if it differs), with
    and without a full stop. The full stop stands in for end of speech (``align`` gives no
    end-of-text probability); the bare form lets "ja" match a longer "ja, det vil jeg gerne".
    Capitalized forms are left out: after silence normalization they won 2 of 21 short answers,
    each by less than 1.5 nats, and every variant costs ~15 ms."""
    words = " ".join(phrase.replace(",", " , ").split()).replace(" ,", ",")
    words = words.rstrip(".!?")
    if not words:
        return []
    forms = dict.fromkeys([words.lower(), words])
    return [f" {form}{end}" for form in forms for end in ("", ".")]


def build_candidates(choices: Sequence[Choice]) -> list[Candidate]:
    """Every spelling of every phrase of every choice (duplicates across choices are an error)."""
    seen: dict[str, str] = {}
    out: list[Candidate] = []
    for choice in choices:
        for phrase in choice.phrases:
            for text in phrase_variants(phrase):
                owner = seen.setdefault(text.lower(), choice.key)
                if owner != choice.key:
                    raise ValueError(f"phrase {phrase!r} is in both {owner!r} and {choice.key!r}")
                out.append(Candidate(choice.key, phrase.strip(), text))
    if not out:
        raise ValueError("a closed set needs at least one phrase")
    return out


def log_likelihood(token_probs: Sequence[float]) -> float:
    """Sum of log-probabilities of a candidate's tokens."""
    return float(np.sum(np.log(np.maximum(np.asarray(token_probs, dtype=np.float64), MIN_PROB))))


def evidence(audio: Sequence[float], silence: Sequence[float]) -> list[float]:
    """How much the audio raises each candidate's log-likelihood over silence (nats)."""
    return [a - s for a, s in zip(audio, silence, strict=True)]


def select(candidates: Sequence[Candidate], scores: Sequence[float], none_score: float,
           elapsed_s: float = 0.0) -> ClosedResult:
    """The best choice by its best spelling, or None when "none of them" beats every choice."""
    best: dict[str, tuple[float, str]] = {}
    for cand, score in zip(candidates, scores, strict=True):
        if cand.key not in best or score > best[cand.key][0]:
            best[cand.key] = (score, cand.phrase)
    per_key = {key: round(score, 3) for key, (score, _) in best.items()}
    per_key[NONE] = none_score
    values = np.array(list(per_key.values()), dtype=np.float64)
    shares = np.exp(values - values.max())
    shares /= shares.sum()
    winner = max(best, key=lambda k: best[k][0])
    if best[winner][0] <= none_score:
        return ClosedResult(None, "", float(shares[-1]), per_key, elapsed_s)
    return ClosedResult(winner, best[winner][1], float(shares[list(per_key).index(winner)]),
                        per_key, elapsed_s)


def window_seconds(samples: int, pad_s: float) -> int:
    """Whole seconds to encode: the speech plus ``pad_s`` (whole seconds so silence is cached)."""
    return int(min(MAX_SECONDS, max(1, math.ceil(samples / RATE + pad_s))))


class WhisperChoiceScorer:
    """Teacher-forced scoring on a loaded faster-whisper model. Thread-safe: CTranslate2 runs
    concurrent calls, and the silence caches are guarded by a lock."""

    def __init__(self, model, language: str = "da", pad_s: float = 2.0, none_score: float = 3.0,
                 batch: int = 32) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.model = model            # faster_whisper.WhisperModel
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                                   task="transcribe", language=language)
        self.start = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self.pad_s, self.none_score, self.batch = pad_s, none_score, batch
        self._lock = threading.Lock()
        self._silent_encoded: dict[int, np.ndarray] = {}
        self._silence: dict[tuple[int, tuple[int, ...]], float] = {}

    def score(self, audio: np.ndarray, choices: Sequence[Choice]) -> ClosedResult:
        """``audio``: float32 mono at 16 kHz, one whole utterance."""
        t0 = time.perf_counter()
        candidates = build_candidates(choices)
        tokens = [tuple(self.tokenizer.encode(c.text)) for c in candidates]
        audio = audio[: (MAX_SECONDS - 1) * RATE]
        seconds = window_seconds(len(audio), self.pad_s)
        encoded = self._encode(np.pad(audio, (0, seconds * RATE - len(audio))))
        frames = max(2, len(audio) // (RATE // FRAMES_PER_SECOND))
        on_audio = self._log_likelihoods(encoded, tokens, frames)
        on_silence = self._silence_scores(seconds, tokens)
        return select(candidates, evidence(on_audio, on_silence), self.none_score,
                      time.perf_counter() - t0)

    def _silent(self, seconds: int) -> np.ndarray:
        with self._lock:
            encoded = self._silent_encoded.get(seconds)
        if encoded is None:
            encoded = self._encode(np.zeros(seconds * RATE, dtype=np.float32))
            with self._lock:
                self._silent_encoded[seconds] = encoded
        return encoded

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        features = self.model.feature_extractor(audio.astype(np.float32), padding=0)
        return np.asarray(self.model.encode(features))

    def _log_likelihoods(self, encoded: np.ndarray, tokens: Sequence[tuple[int, ...]],
                         frames: int) -> list[float]:
        import ctranslate2

        out: list[float] = []
        for i in range(0, len(tokens), self.batch):
            part = [list(t) for t in tokens[i:i + self.batch]]
            batch = ctranslate2.StorageView.from_array(
                np.ascontiguousarray(np.repeat(encoded, len(part), axis=0)))
            results = self.model.model.align(batch, self.start, part, frames)
            out.extend(log_likelihood(r.text_token_probs) for r in results)
        return out

    def _silence_scores(self, seconds: int, tokens: Sequence[tuple[int, ...]]) -> list[float]:
        """Each candidate's log-likelihood on silence of the same window (computed once)."""
        with self._lock:
            known = {t: self._silence[(seconds, t)] for t in tokens if (seconds, t) in self._silence}
        missing = [t for t in dict.fromkeys(tokens) if t not in known]
        if missing:
            scores = self._log_likelihoods(self._silent(seconds), missing, seconds * FRAMES_PER_SECOND)
            known.update(zip(missing, scores))
            with self._lock:
                if len(self._silence) > SILENCE_CACHE_MAX:
                    self._silence.clear()
                self._silence.update({(seconds, t): s for t, s in zip(missing, scores)})
        return [known[t] for t in tokens]
