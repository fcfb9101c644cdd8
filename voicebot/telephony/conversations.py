"""What the bot does on a call until the dialogue engine is wired to the phone: greet, then
listen and say back what it heard ("Jeg hørte: …"), turn after turn, until the caller says
"farvel" or hangs up. Keypad presses are echoed too; silence is asked about, then ends the call.
"""

from __future__ import annotations

import asyncio
import logging
import re

from voicebot.dialogue.events import Digit, Silence, Utterance
from voicebot.errors import EngineError
from voicebot.telephony.app import Conversation
from voicebot.telephony.call import HUMAN_TARGET, Call

log = logging.getLogger("voicebot.conversation")

GOODBYE_WORDS = re.compile(r"\b(farvel|hej hej|vi ses|tak for nu)\b", re.IGNORECASE)

# Danish lines of the echo conversation (greeting and goodbye are config prompts)
HEARD = "Jeg hørte: {text}."
NOT_HEARD = "Undskyld, det hørte jeg ikke. Prøv at sige det igen."
PRESSED = "Du trykkede {digit}."
STILL_THERE = "Er du der stadig? Sig, hvad du ringer om."
TO_HUMAN = "Der er desværre en teknisk fejl. Jeg stiller dig videre til en medarbejder."


def echo(turn_timeout: float = 60.0) -> Conversation:
    async def converse(call: Call) -> None:
        await call.say_prompt("greeting")
        silences = 0
        while True:
            try:
                event = await call.next_event(timeout=turn_timeout)
            except asyncio.TimeoutError:
                event = Silence(turn_timeout)
            except EngineError:
                await call.say(TO_HUMAN)
                await call.hand_back(HUMAN_TARGET, outcome="failed")
                return
            if isinstance(event, Utterance):
                silences = 0
                if GOODBYE_WORDS.search(event.text):
                    break
                await call.say(HEARD.format(text=event.text.strip().rstrip(".")) if event.text.strip() else NOT_HEARD)
            elif isinstance(event, Digit):
                silences = 0
                await call.say(PRESSED.format(digit=event.digit))
            elif isinstance(event, Silence):
                silences += 1
                if silences >= call.voice.config.max_no_input:
                    break
                await call.say(STILL_THERE)
        await call.say_prompt("goodbye")
        await call.hangup("resolved")

    return converse
