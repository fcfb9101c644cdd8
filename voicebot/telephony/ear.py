"""The caller's side of one call: audio frames through VAD and ASR into dialogue events, and the
barge-in signals (caller speech or a key press) sent to the ``Speaker``.

Frames arrive from the RTP endpoint (20 ms, the media rate); ``run()`` feeds them to the
``Listener`` (endpointer + recognizer) and queues what the caller did as ``(event, timings)``:
``Utterance`` when an utterance is recognized, ``Silence`` on no-input, ``Digit`` for DTMF.
Recognition runs in the decoding pool, so the ear keeps listening (and can detect a barge-in)
while an utterance is decoded. A recognizer that fails — with any exception — puts an
``EngineError`` on the queue instead, so the conversation hands the caller to a human at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voicebot.dialogue.events import Digit, Silence, Utterance
from voicebot.errors import EngineError, VoicebotError
from voicebot.privacy import redact
from voicebot.speech.asr.recognizer import Listener
from voicebot.speech.endpointer import NoInput, SpeechHeld, UtteranceEnded
from voicebot.telephony.speaker import Speaker

log = logging.getLogger("voicebot.ear")


@dataclass
class VoiceConfig:
    """``voice``: turn-taking on the phone."""

    barge_in: bool = True          # caller speech interrupts the bot
    barge_in_guard_ms: int = 300   # ignore speech this soon after a prompt starts (line echo)
    turn_timeout_s: float = 30.0   # the longest the bot waits for the caller's next event
    queue_status_timeout_s: float = 0.5  # AMI queue status before a human transfer
    human_queue: str = "borgerservice"  # the queue behind the human route (dialplan HUMAN_QUEUE)

    def validate(self) -> None:
        if self.barge_in_guard_ms < 0:
            raise ValueError("barge_in_guard_ms: must not be negative")
        if self.turn_timeout_s <= 0:
            raise ValueError("turn_timeout_s: must be positive")
        if not 0 < self.queue_status_timeout_s <= 0.5:
            raise ValueError("queue_status_timeout_s: must be in (0, 0.5]: a caller never waits longer on AMI")


class Ear:
    def __init__(self, listener: Listener, config: VoiceConfig, speaker: Speaker | None = None,
                 channel_id: str = "", end_silence_ms: int = 0) -> None:
        self.listener = listener
        self.config = config
        self.speaker = speaker
        self.channel_id = channel_id
        self.end_silence_ms = end_silence_ms  # the endpointer's wait, reported with each utterance
        self.events: asyncio.Queue[tuple[object, dict[str, int]]] = asyncio.Queue()
        self._decoding: set[asyncio.Task] = set()

    # ---- what the bot is waiting for -----------------------------------------------------------
    def expect(self, choices: Sequence | None) -> None:
        """The answers the bot's question allows (a closed set), or None for free speech."""
        self.listener.expect(choices)

    def prompt_ended(self, interrupted: bool) -> None:
        if not interrupted:
            # restart the no-input timer; after a barge-in the caller is mid-sentence: keep it
            self.listener.reset()

    # ---- input ---------------------------------------------------------------------------------
    def on_digit(self, digit: str) -> None:
        if self.speaker is not None:
            self.speaker.barge_in("dtmf")
        self.events.put_nowait((Digit(digit), {}))

    async def run(self, frames: asyncio.Queue[np.ndarray]) -> None:
        try:
            while True:
                frame = await frames.get()
                decode_started = False
                for event in self.listener.push(frame):
                    decode_started |= self._on_event(event)
                if decode_started:
                    # let the decode task take its utterance before the next frame is pushed
                    # (Queue.get does not yield while frames are waiting)
                    await asyncio.sleep(0)
        finally:
            for task in self._decoding:
                task.cancel()

    def _on_event(self, event) -> bool:
        """Handle one endpointer event; True when it started a decode."""
        speaker = self.speaker
        if isinstance(event, SpeechHeld):
            if self.config.barge_in and speaker is not None and speaker.playing and speaker.past_echo_guard():
                speaker.barge_in("speech")
        elif isinstance(event, UtteranceEnded):
            # start decoding now (it grabs the utterance before the next frame is pushed)
            task = asyncio.ensure_future(self._recognize(event))
            self._decoding.add(task)
            task.add_done_callback(self._decoding.discard)
            return True
        elif isinstance(event, NoInput) and not (speaker is not None and speaker.playing):
            self.events.put_nowait((Silence(event.silence_ms / 1000), {}))
        return False

    async def _recognize(self, ended: UtteranceEnded) -> None:
        t0 = time.monotonic()
        try:
            result = await self.listener.result()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the engine: the caller goes to a human
            error = exc if isinstance(exc, VoicebotError) else EngineError(f"{type(exc).__name__}: {exc}")
            log.error("speech recognition failed", extra={"channel": self.channel_id, "error": str(error)})
            self.events.put_nowait((error, {}))
            return
        asr_ms = int((time.monotonic() - t0) * 1000)
        log.info("heard", extra={"channel": self.channel_id, "text": redact(result.text),
                                 "confidence": round(result.confidence, 2), "speech_ms": ended.speech_ms,
                                 "decode_ms": asr_ms})
        timings = {"eos_wait_ms": self.end_silence_ms if ended.reason == "silence" else 0, "asr_ms": asr_ms}
        self.events.put_nowait((Utterance(result.text, result.confidence), timings))
