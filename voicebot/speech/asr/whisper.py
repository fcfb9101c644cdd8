"""faster-whisper (CTranslate2): the Danish segment engine.

Decoding settings follow DESIGN.md §5: int8, beam search, no temperature fallback (it pushed RTF
above 1), a short natural-sentence prompt rather than a word list (lists leak into transcripts),
``no_repeat_ngram_size`` and a repeat check, and guards against text hallucinated on silence.
Closed questions are scored, not transcribed (``score_choices``, see closed.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Sequence

import numpy as np

from voicebot.errors import EngineError
from voicebot.speech.asr.base import Choice, ClosedResult, SegmentEngine
from voicebot.speech.asr.guards import collapse_repeats, compression_ratio, is_prompt_echo, limit_length
from voicebot.speech.asr.pool import idle_gap_s, in_flight
from voicebot.speech.asr.whisper_onnx import use_onnx_decoder
from voicebot.speech.asr.whisper_vocab import use_trimmed_vocabulary
from voicebot.speech.asr.whisper_window import short_window
from voicebot.speech.audio import resample

RATE = 16000
logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every utterance at INFO


@dataclasses.dataclass
class WhisperConfig:
    """``speech.asr.whisper``"""

    model: str = "whisper-base-da"    # manifest name or model directory
    compute_type: str = "int8"
    # onnx: the decoder's steps run on ONNX Runtime (whisper_onnx.py, ~20 % less CPU a decode on
    # AVX2 hosts); ctranslate2: all of Whisper in CTranslate2
    decoder: str = "onnx"
    cpu_threads: int = 1              # per decode; parallelism comes from the pool
    beam_size: int = 5
    language: str = "da"
    prompt: str = ""                  # a short natural Danish sentence about the domain
    hotwords_max: int = 0             # >0: this many vocabulary words go in as hotwords
    no_repeat_ngram_size: int = 3
    no_speech_max: float = 0.6        # drop a segment above this no-speech probability...
    logprob_min: float = -1.0         # ...when its average log-probability is also below this
    compression_ratio_max: float = 2.4
    max_chars_per_second: float = 30.0
    window_pad_s: float = 5.0         # encode speech + this much padding, not 30 s (0: stock)
    # at peak load: cheaper settings, so decodes neither queue nor slow each other down
    # (docs/speech.md: beam 2 + 1 s is ~25 % less CPU than beam 5 + 5 s, nst-da WER 0.515 -> 0.519).
    # Peak load: other decodes run or wait, or the last one ended less than busy_within_s ago
    beam_size_busy: int = 2
    window_pad_s_busy: float = 1.0
    busy_within_s: float = 2.0
    # a decode alone in the pool after it stood empty for solo_after_idle_s uses this many
    # threads (a second copy of the model): a lone caller's answer comes ~30 % sooner; 0 or 1: off.
    # The idle gap keeps it off under load, where its extra thread would compete with the next decode
    solo_threads: int = 2
    solo_after_idle_s: float = 2.0
    closed_pad_s: float = 2.0         # closed sets: encode speech + this much padding
    closed_none_score: float = 3.0    # closed sets: evidence (nats) "none of them" gets

    def validate(self) -> None:
        if self.beam_size < 1 or self.beam_size_busy < 1:
            raise ValueError("beam_size, beam_size_busy: must be 1 or more")
        if self.window_pad_s < 0 or self.window_pad_s_busy < 0:
            raise ValueError("window_pad_s, window_pad_s_busy: must not be negative")
        if not 0 < self.no_speech_max <= 1:
            raise ValueError("no_speech_max: must be in (0, 1]")
        if min(self.cpu_threads, self.solo_threads, self.hotwords_max, self.no_repeat_ngram_size,
               self.solo_after_idle_s, self.busy_within_s) < 0:
            raise ValueError("cpu_threads, solo_threads, solo_after_idle_s, busy_within_s, hotwords_max, "
                             "no_repeat_ngram_size: must not be negative")
        if self.decoder not in ("onnx", "ctranslate2"):
            raise ValueError("decoder: must be onnx or ctranslate2")
        if not 0 <= self.closed_pad_s <= 25:
            raise ValueError("closed_pad_s: must be between 0 and 25 seconds")


class WhisperEngine(SegmentEngine):
    name = "whisper"
    streaming = False
    closed_sets = True
    config_class = WhisperConfig

    def __init__(self, config: WhisperConfig, vocabulary=(), workers: int = 1) -> None:
        super().__init__(config, vocabulary, workers)
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise EngineError("faster-whisper is missing: pip install faster-whisper") from None
        from voicebot.models import model_path

        path = model_path(config.model)
        solo = min(config.solo_threads, os.cpu_count() or 1)
        try:
            self.model = WhisperModel(str(path), device="cpu", compute_type=config.compute_type,
                                      cpu_threads=config.cpu_threads, num_workers=max(1, workers))
            # CTranslate2 fixes a model's threads when it loads, so the lone decode needs its own
            # copy (none when cpu_threads is 0: CTranslate2's own count, already every core)
            self.solo_model = (WhisperModel(str(path), device="cpu", compute_type=config.compute_type,
                                            cpu_threads=solo, num_workers=1)
                               if workers > 1 and 1 <= config.cpu_threads < solo else None)
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"cannot load the Whisper model in {path}: {exc}") from None
        if config.decoder == "onnx":
            threads = config.cpu_threads or os.cpu_count() or 1
            use_onnx_decoder([(self.model, threads), (self.solo_model, solo)], path,
                             quantize=config.compute_type.startswith("int8"))
        # whisper-base-da: token ids are mapped where they enter and leave CTranslate2
        use_trimmed_vocabulary([m for m in (self.model, self.solo_model) if m is not None], path)
        words = [w for w in self.vocabulary if w.strip()][: config.hotwords_max]
        self.hotwords = " ".join(words) or None
        self._scorer = None
        self._scorer_lock = threading.Lock()

    @classmethod
    def uses_vocabulary(cls, config: WhisperConfig) -> bool:
        return config.hotwords_max > 0

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        audio = resample(samples, rate, RATE).astype(np.float32) / 32768.0
        audio_s = len(audio) / RATE
        jobs = in_flight()  # 0: called outside the pool (eval, tests); 1: alone in the pool
        gap_s = idle_gap_s()  # how long the pool stood empty before this run of decodes
        beam_size, pad_s = self.settings(busy=jobs > 1 or (jobs == 1 and gap_s < self.config.busy_within_s))
        # alone in a quiet pool, the decode may take the other cores; a decode that arrives
        # meanwhile shares them for the few hundred ms that are left (never the same model)
        solo = jobs == 1 and self.solo_model is not None and gap_s >= self.config.solo_after_idle_s
        model = self.solo_model if solo else self.model
        with short_window(pad_s):
            return self._decode(model, audio, audio_s, beam_size)

    def settings(self, busy: bool) -> tuple[int, float]:
        """(beam size, window padding) for a decode; ``busy``: peak load (other decodes run or
        wait, or one just ended)."""
        c = self.config
        return (c.beam_size_busy, c.window_pad_s_busy) if busy else (c.beam_size, c.window_pad_s)

    def _decode(self, model, audio: np.ndarray, audio_s: float, beam_size: int) -> tuple[str, float]:
        c = self.config
        segments, _ = model.transcribe(
            audio, language=c.language, beam_size=beam_size, temperature=0.0,
            initial_prompt=c.prompt or None, hotwords=self.hotwords,
            no_repeat_ngram_size=c.no_repeat_ngram_size, condition_on_previous_text=False,
            without_timestamps=True, vad_filter=False,
            max_new_tokens=min(200, int(audio_s * 10) + 12))
        texts, weights, logprobs = [], [], []
        for seg in segments:
            text = self._keep(seg)
            if text:
                texts.append(text)
                weights.append(max(1, len(seg.tokens)))
                logprobs.append(seg.avg_logprob + math.log(max(1e-6, 1 - seg.no_speech_prob)))
        text = limit_length(collapse_repeats(" ".join(texts)), audio_s, c.max_chars_per_second)
        if not text or is_prompt_echo(text, c.prompt):
            return "", 0.0
        mean = sum(w * lp for w, lp in zip(weights, logprobs)) / sum(weights)
        return text, float(math.exp(mean))

    def score_choices(self, samples: np.ndarray, rate: int, choices: Sequence[Choice]) -> ClosedResult:
        """Teacher-forced scoring of the expected answers (closed.py); thread-safe."""
        audio = resample(samples, rate, RATE).astype(np.float32) / 32768.0
        return self._closed_scorer().score(audio, choices)

    def _closed_scorer(self):
        with self._scorer_lock:
            if self._scorer is None:
                from voicebot.speech.asr.closed import WhisperChoiceScorer

                c = self.config
                self._scorer = WhisperChoiceScorer(self.model, c.language, c.closed_pad_s,
                                                   c.closed_none_score)
            return self._scorer

    def _keep(self, seg) -> str:
        """The segment's text, or '' when it looks hallucinated."""
        c = self.config
        if seg.no_speech_prob > c.no_speech_max and seg.avg_logprob < c.logprob_min:
            return ""
        text = seg.text.strip()
        if compression_ratio(text) > c.compression_ratio_max:
            text = collapse_repeats(text)
            if compression_ratio(text) > c.compression_ratio_max:
                return ""
        return text


ENGINE = WhisperEngine
