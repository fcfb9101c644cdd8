"""Speech recognition: engines behind one interface, decoded in a bounded pool off the event loop.

The engine is chosen by ``speech.asr.engine`` (``whisper``: faster-whisper segment decoding, the
Danish default; ``vosk``: streaming Kaldi with partials). The call handler uses::

    from voicebot.speech.asr import load_engine, create_listener

    load_engine(settings, vocabulary)                 # at start-up: loads the model once (blocking)
    listener = create_listener(settings, rate=16000, vocabulary=vocabulary)   # one per call
    for event in listener.push(frame):                # 20 ms int16 frames, never blocks
        if isinstance(event, SpeechHeld): ...          # barge-in: stop playback
        if isinstance(event, UtteranceEnded):
            result = await listener.result()          # AsrResult(text, confidence, audio_s, ...)
        if isinstance(event, NoInput): ...
    listener.partial                                  # live partial text (streaming engines)
    listener.reset()                                  # when a prompt ends: restart the no-input timer
    listener.expect([Choice("yes", ("ja", "jo")), Choice("no", ("nej",))])  # a closed question:
                                                      # result().text is "ja"/"nej"/"" (none)
    listener.expect(None)                             # back to free transcription

Without the VAD: ``recognizer = create_recognizer(settings, rate)``, ``recognizer.push(samples)``,
``await recognizer.finish()``. One-shot: ``await transcribe(settings, samples, rate)``.
Engines raise ``EngineError`` (the call goes to a human) and ``ModelError`` (model not installed).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence

import numpy as np

from voicebot.speech.asr.base import AsrEngine, AsrResult, AsrStream, Choice, ClosedResult
from voicebot.speech.asr.blas import single_threaded_blas
from voicebot.speech.asr.config import ENGINES, AsrConfig
from voicebot.speech.asr.pool import get_pool, run_in_pool
from voicebot.speech.asr.priority import run_lowered
from voicebot.speech.asr.recognizer import Listener, Recognizer

__all__ = ["ENGINES", "AsrConfig", "AsrEngine", "AsrResult", "AsrStream", "Choice", "ClosedResult",
           "Listener", "Recognizer",
           "create_listener", "create_recognizer", "engine_class", "load_engine", "transcribe"]

_engines: dict[tuple, AsrEngine] = {}
_engines_lock = threading.Lock()


def engine_class(name: str) -> type[AsrEngine]:
    """The engine class registered under ``name`` (its SDK is imported only now)."""
    return importlib.import_module(ENGINES[name]).ENGINE


def load_engine(settings, vocabulary: Sequence[str] = (), engine: str | None = None) -> AsrEngine:
    """The configured engine with its model loaded; cached, so every call shares one model."""
    cfg = settings.section("speech.asr", AsrConfig)
    name = engine or cfg.engine
    if name not in ENGINES:
        raise ValueError(f"unknown ASR engine {name!r} (known: {', '.join(ENGINES)})")
    cls = engine_class(name)
    engine_cfg = settings.section(f"speech.asr.{name}", cls.config_class)
    if not cls.uses_vocabulary(engine_cfg):
        vocabulary = ()  # one loaded model serves every vocabulary
    key = (name, repr(engine_cfg), tuple(vocabulary))
    single_threaded_blas()  # numpy's spinning BLAS workers took a core from the decoders (blas.py)
    with _engines_lock:
        if key not in _engines:
            # loaded in a lowered thread: the engine's own native threads inherit the priority
            _engines[key] = run_lowered(cfg.nice, cls, engine_cfg, vocabulary, cfg.worker_count)
        return _engines[key]


def _pool(settings):
    cfg = settings.section("speech.asr", AsrConfig)
    return get_pool(cfg.worker_count, cfg.nice)


def create_recognizer(settings, rate: int = 16000, vocabulary: Sequence[str] = (),
                      engine: str | None = None) -> Recognizer:
    return Recognizer(load_engine(settings, vocabulary, engine), _pool(settings), rate)


def create_listener(settings, rate: int = 16000, vocabulary: Sequence[str] = (),
                    engine: str | None = None) -> Listener:
    from voicebot.speech.endpointer import Endpointer
    from voicebot.speech.vad import VadConfig

    endpointer = Endpointer(settings.section("speech.vad", VadConfig), rate)
    return Listener(endpointer, create_recognizer(settings, rate, vocabulary, engine))


async def transcribe(settings, samples: np.ndarray, rate: int, vocabulary: Sequence[str] = (),
                     engine: str | None = None) -> AsrResult:
    """Recognize one whole utterance in the pool."""
    eng = load_engine(settings, vocabulary, engine)
    return await run_in_pool(_pool(settings), eng.transcribe, samples, rate)
