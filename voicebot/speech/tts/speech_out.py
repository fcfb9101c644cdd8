"""What the bot says, as audio at the call's rate: recording first, then the TTS cache, then synthesis.

Only fixed lines (the prompts here, and what ``prebuild`` declared) are cached on disk; a dynamic
line is synthesized in memory (see ``TTSCache``).

The call handler holds one ``SpeechOut`` per call rate (shared by all calls at that rate) and asks
``await speech.audio_for(text, recording)`` for every article answer, or
``await speech.prompt("greeting_voice")`` for a fixed line of the dialogue. Recordings named in an article
or in ``speech.tts.recordings`` win over TTS; a recording that cannot be read is logged and the
text is synthesized instead, so the caller still hears the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from voicebot.errors import ConfigError
from voicebot.speech.tts.base import PathResolver
from voicebot.speech.tts.cache import TTSCache, normalize_text
from voicebot.speech.tts.factory import create_tts_cache, tts_config
from voicebot.speech.tts.recordings import RecordingError, load_recording

if TYPE_CHECKING:
    from voicebot.config import Settings

log = logging.getLogger(__name__)

_MAX_RECORDINGS_IN_MEMORY = 256


class SpeechOut:
    """Audio for text at one rate, from a recording, the cache or the engine (in that order)."""

    def __init__(self, cache: TTSCache, prompts: Mapping[str, str] | None = None,
                 recordings: Mapping[str, Path] | None = None, resolve: PathResolver = Path) -> None:
        self.cache = cache
        self.rate = cache.rate
        self.prompts = dict(prompts or {})
        self.recordings = dict(recordings or {})
        self.resolve = resolve
        self._loaded: OrderedDict[tuple[Path, int, int], np.ndarray] = OrderedDict()
        # a fixed line said by the dialogue plays its recording when one is configured
        self._recording_of = {normalize_text(self.prompts[name]): path for name, path in self.recordings.items()
                              if name in self.prompts}
        # the fixed lines may live in the disk cache; any other text is synthesized in memory
        cache.declare_known(self.prompts.values())

    def prepare(self) -> None:
        """Load the engine's model now (blocking), so the first uncached text is not slow."""
        self.cache.engine.prepare()

    async def audio_for(self, text: str, recording: Path | None = None) -> np.ndarray:
        """int16 mono audio at ``self.rate`` saying ``text`` (or playing ``recording`` when given).

        Raises ``EngineError`` only when synthesis is needed and fails.
        """
        recording = recording or self._recording_of.get(normalize_text(text))
        if recording is not None:
            samples = await asyncio.to_thread(self.recording_audio, recording)
            if samples is not None:
                return samples
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        return await self.cache.aget(text)

    async def prompt(self, name: str) -> np.ndarray:
        """Audio of the fixed prompt ``name`` (a key of ``prompts`` in config, e.g. "greeting")."""
        if name not in self.prompts:
            raise KeyError(f"no prompt named {name!r} in config (known: {', '.join(sorted(self.prompts))})")
        return await self.audio_for(self.prompts[name], self.recordings.get(name))

    def recording_audio(self, recording: Path) -> np.ndarray | None:
        """The recording at the call's rate, or None (logged) when it cannot be played (blocking)."""
        path = self.resolve(recording)
        try:
            stat = path.stat()
            memo = (path, stat.st_mtime_ns, stat.st_size)
            samples = self._loaded.get(memo)
            if samples is None:
                samples = self._loaded[memo] = load_recording(path, self.rate)
                while len(self._loaded) > _MAX_RECORDINGS_IN_MEMORY:
                    self._loaded.popitem(last=False)
            return samples
        except (OSError, RecordingError) as exc:
            log.warning("recording not playable, using TTS", extra={"file": str(path), "error": str(exc)})
            return None


def fixed_prompts(settings: Settings) -> dict[str, str]:
    """Every fixed line of the dialogue (``voicebot/dialogue/texts.py``, overridable under
    ``dialogue:``), by name; templates with ``{}`` are left out (they are synthesized when used)."""
    import dataclasses

    from voicebot.dialogue.texts import DialogueTexts

    texts = settings.section("dialogue", DialogueTexts)
    return {f.name: value for f in dataclasses.fields(texts)
            if isinstance(value := getattr(texts, f.name), str) and value.strip() and "{" not in value}


def prompt_recordings(settings: Settings, prompts: Mapping[str, str]) -> dict[str, Path]:
    """``speech.tts.recordings``, checked against the prompt names, with paths made absolute."""
    out: dict[str, Path] = {}
    for name, file in tts_config(settings).recordings.items():
        key = f"speech.tts.recordings.{name}"
        if name not in prompts:
            loc = settings.where.get(key)
            raise ConfigError(f"no prompt named {name!r} (known: {', '.join(sorted(prompts))})",
                              file=loc.file if loc else None, line=loc.line if loc else None, key=key)
        out[name] = settings.path(file)
    return out


def create_speech_out(settings: Settings, rate: int, cache: TTSCache | None = None) -> SpeechOut:
    """The ``SpeechOut`` for calls at ``rate`` (8000 for ulaw, 16000 for slin16)."""
    prompts = fixed_prompts(settings)
    return SpeechOut(cache or create_tts_cache(settings, rate), prompts,
                     prompt_recordings(settings, prompts), settings.path)
