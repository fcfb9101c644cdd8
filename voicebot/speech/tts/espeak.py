"""espeak-ng: the embedded default Danish voice (robotic but intelligible, ~18k chars/s).

Runs the ``espeak-ng`` program (Debian package ``espeak-ng``) once per text; no Python SDK. The
text goes to its stdin, never its command line: any local user can read a process's arguments
(``ps``, /proc/PID/cmdline), and the text may be built from what a caller said.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np

from voicebot.errors import EngineError
from voicebot.speech.tts.base import Synthesized, TTSEngine


ESPEAK_RATE = 22050  # espeak-ng's own voices all speak at this rate


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

    def command(self) -> list[str]:
        """The espeak-ng command line: options only. The text is read from stdin and the WAV is
        written to stdout, so neither the text nor its audio is ever in argv or in a file."""
        c = self.config
        return [self.binary, "-v", c.voice, "-s", str(c.speed), "-p", str(c.pitch), "--stdin", "--stdout"]

    def synthesize(self, text: str) -> Synthesized:
        c = self.config
        try:
            proc = subprocess.run(self.command(), input=text.encode("utf-8"), capture_output=True,
                                  timeout=c.timeout_seconds)
        except subprocess.TimeoutExpired:
            raise EngineError(f"espeak-ng took longer than {c.timeout_seconds:g} s") from None
        if proc.returncode != 0:
            raise EngineError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
        return _parse_wav(proc.stdout)

    def cache_key_parts(self) -> dict:
        c = self.config
        return {"engine": self.name, "voice": c.voice, "speed": c.speed, "pitch": c.pitch}


def _parse_wav(data: bytes) -> Synthesized:
    """espeak-ng's WAV on stdout: a seekless stream, so the header's sizes are placeholders; the
    samples run to the end of the data. No text, no output at all: silence."""
    if not data:
        return Synthesized(np.zeros(0, dtype=np.int16), ESPEAK_RATE)
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise EngineError(f"espeak-ng wrote {8 * w.getsampwidth()}-bit, {w.getnchannels()}-channel audio")
            rate = w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise EngineError(f"espeak-ng wrote no readable WAV: {exc}") from None
    samples = np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2").astype(np.int16)
    return Synthesized(samples, rate)


ENGINE = EspeakTTS
