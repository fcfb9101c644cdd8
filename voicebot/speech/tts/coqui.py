"""coqui: Coqui TTS (the ``coqui-tts`` package), the customer's choice for the Danish VITS voice.

Optional: ``pip install '.[coqui]'`` (pulls torch; see docs/tts.md). Either name a model from
Coqui's catalogue (``tts_models/da/cv/vits``; fetched once into ``$TTS_HOME`` by Coqui's model
manager, so pre-fetch it on a machine with internet) or point ``model_path`` and ``config_path``
at local files, which never touches the network.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.errors import EngineError, ModelError
from voicebot.speech.tts.base import PathResolver, Synthesized, TTSEngine

INSTALL_HINT = "pip install 'voicebot[coqui]' (coqui-tts; needs torch and torchaudio, see docs/tts.md)"


def import_coqui() -> Any:
    """Import Coqui's ``TTS.api.TTS`` class, or raise ``EngineError`` with an install hint."""
    try:
        from TTS.api import TTS
    except Exception as exc:  # ImportError, or a broken torch/torchaudio raising anything at import
        raise EngineError(f"coqui-tts is not importable ({type(exc).__name__}: {exc}): {INSTALL_HINT}") from None
    return TTS


@dataclass
class CoquiConfig:
    model: str = "tts_models/da/cv/vits"
    model_path: str = ""  # a local checkpoint; wins over `model` when set
    config_path: str = ""  # its config.json (required with model_path)
    speaker: str | None = None  # multi-speaker models only
    device: str = "cpu"

    def validate(self) -> None:
        if bool(self.model_path) != bool(self.config_path):
            raise ValueError("config_path: model_path and config_path go together")
        if not (self.model or self.model_path):
            raise ValueError("model: name a Coqui model or set model_path/config_path")


class CoquiTTS(TTSEngine):
    name = "coqui"
    Config = CoquiConfig

    def __init__(self, config: CoquiConfig, model_path: Path | None = None,
                 config_path: Path | None = None) -> None:
        self.config = config
        self.model_path = model_path
        self.config_path = config_path
        self._tts: Any = None
        self._lock = threading.Lock()  # a torch model is not safe to share between threads

    @classmethod
    def from_config(cls, config: CoquiConfig, resolve: PathResolver) -> CoquiTTS:
        if config.model_path:
            return cls(config, resolve(config.model_path), resolve(config.config_path))
        return cls(config)

    def prepare(self) -> None:
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._tts is None:
            TTS = import_coqui()
            try:
                if self.model_path:
                    tts = TTS(model_path=str(self.model_path), config_path=str(self.config_path),
                              progress_bar=False)
                else:
                    tts = TTS(self.config.model, progress_bar=False)
                self._tts = tts.to(self.config.device)
            except Exception as exc:  # download refused, missing files, bad checkpoint
                raise ModelError(f"cannot load coqui model {self.model_path or self.config.model}: {exc}") from exc
        return self._tts

    def synthesize(self, text: str) -> Synthesized:
        with self._lock:
            tts = self._load()
            try:
                wav = tts.tts(text=text, speaker=self.config.speaker)
            except Exception as exc:
                raise EngineError(f"coqui failed: {exc}") from exc
            rate = int(tts.synthesizer.output_sample_rate)
        x = np.asarray(wav, dtype=np.float32)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 1.0:
            x = x / peak
        return Synthesized((x * 32767).astype(np.int16), rate)

    def cache_key_parts(self) -> dict:
        c = self.config
        voice = str(self.model_path.name) if self.model_path else c.model
        size = self.model_path.stat().st_size if self.model_path and self.model_path.exists() else None
        return {"engine": self.name, "voice": voice, "voice_bytes": size, "speaker": c.speaker}


ENGINE = CoquiTTS
