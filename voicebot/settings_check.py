"""Validate every setting at start-up, not first inside a call.

Sections belong to the modules that use them (``settings.section(name, Dataclass)``), so most are
validated lazily. ``voicebot serve`` and ``voicebot doctor`` call ``validate_all`` first: a typo
in ``speech.vad`` or an unknown top-level section stops the bot with file, line and key before it
takes a call.
"""

from __future__ import annotations

from collections.abc import Callable

from voicebot.config import Settings
from voicebot.errors import ConfigError


def _sections() -> dict[str, Callable[[Settings], object]]:
    from voicebot.chat.service import ChatConfig
    from voicebot.dialogue.texts import ConversationRules, DialogueTexts
    from voicebot.knowledge.departments import KnowledgeConfig, load_directory
    from voicebot.nlu.config import NluConfig
    from voicebot.sms import SmsConfig
    from voicebot.speech.asr import AsrConfig, engine_class
    from voicebot.speech.tts.factory import engine_class as tts_engine_class
    from voicebot.speech.tts.factory import tts_config
    from voicebot.speech.vad import VadConfig
    from voicebot.store import StoreConfig
    from voicebot.telephony.ear import VoiceConfig

    def asr(s: Settings) -> object:
        cfg = s.section("speech.asr", AsrConfig)
        cls = engine_class(cfg.engine)
        return s.section(f"speech.asr.{cfg.engine}", cls.config_class)

    def tts(s: Settings) -> object:
        cfg = tts_config(s)
        return s.section(f"speech.tts.{cfg.engine}", tts_engine_class(cfg.engine).Config)

    return {
        "asterisk": lambda s: s.asterisk, "media": lambda s: s.media, "web": lambda s: s.web,
        "voice": lambda s: s.section("voice", VoiceConfig),
        "conversation": lambda s: s.section("conversation", ConversationRules),
        "dialogue": lambda s: s.section("dialogue", DialogueTexts),
        "knowledge": lambda s: s.section("knowledge", KnowledgeConfig),
        "departments": load_directory, "hours": load_directory,
        "nlu": lambda s: s.section("nlu", NluConfig),
        "speech": lambda s: (s.section("speech.vad", VadConfig), asr(s), tts(s)),
        "chat": lambda s: s.section("chat", ChatConfig),
        "store": lambda s: s.section("store", StoreConfig),
        "sms": lambda s: s.section("sms", SmsConfig),
    }


def validate_all(settings: Settings) -> None:
    """Raise ``ConfigError`` (file, line, key) for the first bad or unknown setting."""
    sections = _sections()
    for key in settings.data:
        if key not in sections:
            loc = settings.where.get(key)
            raise ConfigError(f"unknown section (known: {', '.join(sorted(sections))})",
                              file=loc.file if loc else None, line=loc.line if loc else None, key=key)
    for check in sections.values():
        check(settings)
