"""Build the configured TTS engine and cache from settings (``speech.tts``).

Engines are looked up by name in ``ENGINES`` (name -> module defining ``ENGINE``); each engine's
options sit next to it in config (``speech.tts.<name>``) and are validated by its own dataclass.
Importing an engine module is cheap: SDKs are imported on first synthesis.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from voicebot.errors import ConfigError
from voicebot.speech.tts.base import TTSEngine
from voicebot.speech.tts.cache import TTSCache

if TYPE_CHECKING:
    from voicebot.config import Settings

ENGINES: dict[str, str] = {
    "espeak": "voicebot.speech.tts.espeak",
    "piper": "voicebot.speech.tts.piper",
    "coqui": "voicebot.speech.tts.coqui",
}


@dataclasses.dataclass
class TtsConfig:
    engine: str = "espeak"
    cache_dir: str = "cache/tts"  # relative to the project root
    #: prompt name (a key of ``prompts``) -> WAV file played instead of synthesizing it
    recordings: dict[str, str] = dataclasses.field(default_factory=dict)
    # each engine's options; validated by the engine's own Config when it is built
    espeak: dict[str, Any] = dataclasses.field(default_factory=dict)
    piper: dict[str, Any] = dataclasses.field(default_factory=dict)
    coqui: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine: unknown TTS engine {self.engine!r} (known: {', '.join(ENGINES)})")
        if not self.cache_dir:
            raise ValueError("cache_dir: must name a directory")


def tts_config(settings: Settings) -> TtsConfig:
    return settings.section("speech.tts", TtsConfig)


def engine_class(name: str) -> type[TTSEngine]:
    if name not in ENGINES:
        raise ConfigError(f"unknown TTS engine {name!r} (known: {', '.join(ENGINES)})", key="speech.tts.engine")
    return importlib.import_module(ENGINES[name]).ENGINE


def create_tts(settings: Settings, engine: str | None = None) -> TTSEngine:
    """The engine named in ``speech.tts.engine`` (or ``engine``), built from its options."""
    name = engine or tts_config(settings).engine
    cls = engine_class(name)
    assert cls.Config is not None, f"{cls.__name__} declares no Config"
    options = settings.section(f"speech.tts.{name}", cls.Config)
    return cls.from_config(options, settings.path)


def create_tts_cache(settings: Settings, rate: int, engine: TTSEngine | None = None) -> TTSCache:
    """A cache at the call's ``rate`` in ``speech.tts.cache_dir``, around ``engine`` (default: the
    configured one)."""
    directory = settings.path(tts_config(settings).cache_dir)
    return TTSCache(engine or create_tts(settings), directory, rate)
