"""Text-to-speech: engines behind one interface, a disk cache, and recorded prompts.

The call handler uses one object, ``SpeechOut`` (``create_speech_out(settings, rate)``):
``await speech.audio_for(text, recording)`` / ``await speech.prompt("greeting")``. Engines are
chosen by name in config (``speech.tts.engine``); their SDKs are imported lazily in their own
modules. See docs/tts.md.
"""

from voicebot.speech.tts.base import Synthesized, TTSEngine
from voicebot.speech.tts.cache import TTSCache
from voicebot.speech.tts.factory import ENGINES, create_tts, create_tts_cache
from voicebot.speech.tts.speech_out import SpeechOut, create_speech_out, fixed_prompts

__all__ = ["ENGINES", "SpeechOut", "Synthesized", "TTSCache", "TTSEngine", "create_speech_out",
           "create_tts", "create_tts_cache", "fixed_prompts"]
