"""espeak-ng: the embedded default Danish voice (robotic but intelligible, ~18k chars/s).

Runs the ``espeak-ng`` program (Debian package ``espeak-ng``) once per text; no Python SDK.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from voicebot.errors import EngineError
from voicebot.speech.audio import read_wav
from voicebot.speech.tts.base import Synthesized, TTSEngine


@dataclass
class EspeakConfig:
    voice: str = "da"
    speed: int = 160  # words per minute; espeak's default 175 is hurried on a phone line
    pitch: int = 50  # 0-99
    timeout_seconds: float = 60.0

    def validate(self) -> None:
        if not 80 <= self.speed <= 450:
            raise ValueError("speed: must be 80-450 words per minute")
        if not 0 <= self.pitch <= 99:
            raise ValueError("pitch: must be 0-99")


class EspeakTTS(TTSEngine):
    name = "espeak"
    Config = EspeakConfig

    def __init__(self, config: EspeakConfig | None = None) -> None:
        self.config = config or EspeakConfig()
        self.binary = shutil.which("espeak-ng")
        if not self.binary:
            raise EngineError("espeak-ng is not installed (Debian package 'espeak-ng'; `make setup` installs it)")

    def synthesize(self, text: str) -> Synthesized:
        c = self.config
        with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
            cmd = [self.binary, "-v", c.voice, "-s", str(c.speed), "-p", str(c.pitch), "-w", tmp.name, "--", text]
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=c.timeout_seconds)
            except subprocess.TimeoutExpired:
                raise EngineError(f"espeak-ng took longer than {c.timeout_seconds:g} s") from None
            if proc.returncode != 0:
                raise EngineError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
            samples, rate = read_wav(tmp.name)
        return Synthesized(samples, rate)

    def cache_key_parts(self) -> dict:
        c = self.config
        return {"engine": self.name, "voice": c.voice, "speed": c.speed, "pitch": c.pitch}


ENGINE = EspeakTTS
