"""Vosk (Kaldi): the streaming engine. Loads any Vosk model directory.

Frames are decoded as they arrive, so partial results are available while the caller speaks
(early barge-in decisions, latency) and the final result costs little at end of utterance.
With ``grammar: true`` recognition is restricted to the vocabulary phrases plus ``[unk]``
(closed questions: yes/no, a menu), which needs a model with a dynamic graph (HCLr.fst + Gr.fst).
There is no public Danish Vosk model: see docs/speech.md for plugging one in.
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from voicebot.errors import EngineError
from voicebot.speech.asr.base import AsrEngine, AsrResult, AsrStream


@dataclasses.dataclass
class VoskConfig:
    """``speech.asr.vosk``"""

    model: str = "vosk-ko-test"       # manifest name or model directory
    grammar: bool = False             # restrict to the vocabulary phrases
    phrases: list[str] = dataclasses.field(default_factory=list)  # extra grammar phrases
    partial_every_ms: int = 100       # how often to ask Kaldi for a partial (it costs a lattice walk)


def _vosk():
    try:
        import vosk
    except ImportError:
        raise EngineError("vosk is missing: pip install vosk") from None
    vosk.SetLogLevel(-1)
    return vosk


class VoskEngine(AsrEngine):
    name = "vosk"
    streaming = True
    config_class = VoskConfig

    def __init__(self, config: VoskConfig, vocabulary=(), workers: int = 1) -> None:
        super().__init__(config, vocabulary, workers)
        from voicebot.models import model_path

        self._vosk = _vosk()
        path = model_path(config.model)
        try:
            self.model = self._vosk.Model(str(path))
        except Exception as exc:  # vosk raises a bare Exception on a bad directory
            raise EngineError(f"cannot load the Vosk model in {path}: {exc}") from None
        phrases = [p.lower() for p in [*config.phrases, *self.vocabulary] if p.strip()]
        self.grammar = json.dumps([*phrases, "[unk]"], ensure_ascii=False) if config.grammar and phrases else None

    @classmethod
    def uses_vocabulary(cls, config: VoskConfig) -> bool:
        return config.grammar

    def open_stream(self, rate: int) -> AsrStream:
        if self.grammar:
            rec = self._vosk.KaldiRecognizer(self.model, rate, self.grammar)
        else:
            rec = self._vosk.KaldiRecognizer(self.model, rate)
        rec.SetWords(True)
        return VoskStream(rec, rate, rate * self.config.partial_every_ms // 1000)


class VoskStream(AsrStream):
    def __init__(self, recognizer, rate: int, partial_every: int) -> None:
        self.rec, self.rate = recognizer, rate
        self.done: list[dict] = []        # results of segments Kaldi already closed
        self.samples = 0
        self.partial_every, self.next_partial = partial_every, 0
        self.partial = ""

    def accept(self, samples: np.ndarray) -> str:
        self.samples += len(samples)
        if self.rec.AcceptWaveform(samples.astype("<i2", copy=False).tobytes()):
            self.done.append(json.loads(self.rec.Result()))
            self.partial = self._text(self.done)
            return self.partial
        if self.samples >= self.next_partial:
            self.next_partial = self.samples + self.partial_every
            partial = json.loads(self.rec.PartialResult()).get("partial", "")
            self.partial = " ".join(t for t in (self._text(self.done), partial) if t)
        return self.partial

    def finish(self) -> AsrResult:
        t0 = time.perf_counter()
        results = [*self.done, json.loads(self.rec.FinalResult())]
        text = self._text(results)
        words = [w for r in results for w in r.get("result", []) if w.get("word") != "[unk]"]
        confidence = float(np.mean([w.get("conf", 0.0) for w in words])) if words and text else 0.0
        return AsrResult(text, confidence, self.samples / self.rate, time.perf_counter() - t0, "vosk")

    @staticmethod
    def _text(results: list[dict]) -> str:
        words = " ".join(r.get("text", "") for r in results).replace("[unk]", " ")
        return " ".join(words.split())


ENGINE = VoskEngine
