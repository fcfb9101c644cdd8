"""coqui: Coqui TTS (the ``coqui-tts`` package), the customer's choice for the Danish VITS voice.

Optional: ``pip install '.[coqui]'`` (pulls torch; see docs/tts.md). By default the engine loads a
local checkpoint from ``model_path`` (``voicebot models install coqui-da-vits`` puts the Danish
VITS voice in ``models/coqui-da-vits``), which never touches the network. With ``model_path``
empty, ``model`` names a voice in Coqui's catalogue, which Coqui's model manager downloads into
``$TTS_HOME`` on first use: only for machines with internet.
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
    model: str = "tts_models/da/cv/vits"  # catalogue name, used when model_path is empty
    model_path: str = "models/coqui-da-vits"  # a checkpoint (.pth) or a directory holding one
    config_path: str = ""  # default: config.json next to the checkpoint
    speaker: str | None = None  # multi-speaker models only
    device: str = "cpu"

    def validate(self) -> None:
        if self.config_path and not self.model_path:
            raise ValueError("config_path: only used with model_path")
        if not (self.model or self.model_path):
            raise ValueError("model: name a Coqui model or set model_path")


def checkpoint_files(model_path: Path, config_path: Path | None) -> tuple[Path, Path]:
    """The (checkpoint, config.json) pair that ``model_path`` (a file or a directory) names."""
    model = model_path
    if model_path.is_dir():
        found = sorted(p for p in model_path.rglob("*.pth") if not p.name.startswith("speaker"))
        if not found:
            raise ModelError(f"no coqui checkpoint (*.pth) in {model_path} (voicebot models install coqui-da-vits)")
        model = found[0]
    config = config_path or model.parent / "config.json"
    for path in (model, config):
        if not path.is_file():
            raise ModelError(f"coqui model file not found: {path} (voicebot models install coqui-da-vits)")
    return model, config


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
            return cls(config, resolve(config.model_path), resolve(config.config_path) if config.config_path else None)
        return cls(config)

    def prepare(self) -> None:
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._tts is None:
            TTS = import_coqui()
            try:
                if self.model_path:
                    model, config = checkpoint_files(self.model_path, self.config_path)
                    tts = TTS(model_path=str(model), config_path=str(config), progress_bar=False)
                else:
                    tts = TTS(self.config.model, progress_bar=False)
                self._tts = tts.to(self.config.device)
            except ModelError:
                raise
            except Exception as exc:  # download refused, bad checkpoint
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
        voice = self.model_path.name if self.model_path else c.model
        return {"engine": self.name, "voice": voice, "speaker": c.speaker}


ENGINE = CoquiTTS
