"""What the bot does on a call, until the dialogue engine takes over: greet and hang up."""

from __future__ import annotations

import logging

from voicebot.config import PromptsConfig
from voicebot.speech.tts.cache import TTSCache
from voicebot.telephony.app import Conversation
from voicebot.telephony.call import Call

log = logging.getLogger("voicebot.conversation")


def greeter(prompts: PromptsConfig, tts: TTSCache) -> Conversation:
    async def greet(call: Call) -> None:
        audio = await tts.aget(prompts.greeting)
        played = await call.play(audio)
        log.info("greeting played", extra={"channel": call.id, "seconds": round(played, 2)})
        await call.hangup("resolved")

    return greet
