"""The declared test recognizer (``speech.asr.engine: script``): returns the next text of a list
for each utterance the real VAD cuts.

Why it exists: no Danish voice that Whisper understands can be synthesized on the test machines
(espeak-ng Danish comes out as nonsense), so call-flow tests run everything real — SIP, RTP, VAD,
barge-in, TTS, dialplan, AMI, store — except the words. The test caller sends the texts of its
spoken steps in a SIP header; each call gets its own list. It can never be picked by accident:
config validation refuses it unless ``$VOICEBOT_ALLOW_TEST_RECOGNIZER=1``, and the bot's start-up
log and ``voicebot doctor`` say loudly when it is on. The real recognizers are proven on real
Danish speech (tests/integration/test_asr_engines.py).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import json
import os
import threading
import time

import numpy as np

from voicebot.speech.asr.base import SegmentEngine

ALLOW_ENV = "VOICEBOT_ALLOW_TEST_RECOGNIZER"
FAIL = "!raise"  # a script entry that makes the recognizer fail, as a crashing engine would
SLOW = "!slow "  # "!slow 3.5 text": the decode takes 3.5 s (in the decoding pool), as under overload
MAX_HEADER_CHARS = 2000


def allowed() -> bool:
    return os.environ.get(ALLOW_ENV) == "1"


HEADER = "X-Voicebot-Asr-Script"  # the SIP header that carries a call's texts


def encode_script(entries: list[str | None]) -> str:
    """The header value: base64url (no padding) of the UTF-8 JSON list (None: a recording)."""
    raw = json.dumps(entries, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_script(value: str) -> list[str | None]:
    """The inverse of ``encode_script``; ValueError on anything else."""
    value = value.strip()
    if len(value) > MAX_HEADER_CHARS:
        raise ValueError(f"{HEADER}: longer than {MAX_HEADER_CHARS} characters")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        entries = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{HEADER}: not base64url JSON: {exc}") from None
    if not isinstance(entries, list) or not all(e is None or isinstance(e, str) for e in entries):
        raise ValueError(f"{HEADER}: expected a JSON list of texts or nulls")
    return entries


@dataclasses.dataclass
class ScriptConfig:
    """``speech.asr.script``: texts used when a call brings no script of its own."""

    texts: list[str] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        if not allowed():
            raise ValueError(f"the test recognizer is for tests only: set {ALLOW_ENV}=1 to use it")


class ScriptEngine(SegmentEngine):
    name = "script"
    streaming = False
    speculative = False  # each decode consumes the next scripted text: never decode to throw away
    config_class = ScriptConfig

    def __init__(self, config: ScriptConfig, vocabulary=(), workers: int = 1,
                 texts: list[str | None] | None = None) -> None:
        super().__init__(config, vocabulary, workers)
        self._texts = collections.deque(config.texts if texts is None else texts)
        self._lock = threading.Lock()

    @classmethod
    def uses_vocabulary(cls, config: ScriptConfig) -> bool:
        return False

    def for_call(self, texts: list[str | None] | None) -> ScriptEngine:
        """A fresh engine with this call's own list (the caller's header, else the config's)."""
        return ScriptEngine(self.config, (), self.workers, texts)

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        with self._lock:
            text = self._texts.popleft() if self._texts else None
        if text == FAIL:
            raise RuntimeError("the test recognizer was told to fail")
        if text and text.startswith(SLOW):
            seconds, _, text = text[len(SLOW):].partition(" ")
            time.sleep(min(float(seconds), 60.0))
        return (text, 1.0) if text else ("", 0.0)


ENGINE = ScriptEngine
