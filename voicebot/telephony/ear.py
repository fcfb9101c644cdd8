"""The caller's side of one call: audio frames through VAD and ASR into dialogue events, plus
barge-in (caller speech or a keypad press stops the bot's playback).

Frames arrive from the RTP endpoint (20 ms, the media rate); ``run()`` feeds them to the
``Listener`` (endpointer + recognizer) and turns its events into the dialogue vocabulary:
``Utterance`` when an utterance is recognized, ``Silence`` on no-input, ``Digit`` for DTMF.
Recognition runs in the decoding pool, so the ear keeps listening (and can detect a barge-in)
while an utterance is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from voicebot.dialogue.events import Digit, Silence, Utterance
from voicebot.errors import VoicebotError
from voicebot.speech.asr.recognizer import Listener
from voicebot.speech.endpointer import NoInput, SpeechHeld, UtteranceEnded

log = logging.getLogger("voicebot.ear")


@dataclass
class VoiceConfig:
    """``voice``: turn-taking on the phone."""

    barge_in: bool = True          # caller speech interrupts the bot
    barge_in_guard_ms: int = 300   # ignore speech this soon after a prompt starts (line echo)
    max_no_input: int = 2          # silences in a row before the bot says goodbye

    def validate(self) -> None:
        if self.barge_in_guard_ms < 0:
            raise ValueError("barge_in_guard_ms: must not be negative")
        if self.max_no_input < 1:
            raise ValueError("max_no_input: must be at least 1")


class Ear:
    def __init__(self, listener: Listener, config: VoiceConfig, channel_id: str = "") -> None:
        self.listener = listener
        self.config = config
        self.channel_id = channel_id
        self.events: asyncio.Queue = asyncio.Queue()
        self.playing = False
        self._prompt_started = 0.0
        self._stop_playback = asyncio.Event()
        self._decoding: set[asyncio.Task] = set()

    # ---- prompts -------------------------------------------------------------------------------
    def prompt_started(self) -> asyncio.Event:
        """A prompt starts playing; the returned event is set on barge-in."""
        self.playing = True
        self._prompt_started = time.monotonic()
        self._stop_playback = asyncio.Event()
        return self._stop_playback

    def prompt_ended(self, interrupted: bool) -> None:
        self.playing = False
        if not interrupted:
            # restart the no-input timer; after a barge-in the caller is mid-sentence: keep it
            self.listener.reset()

    def _barge_in(self, why: str) -> None:
        if self.playing and not self._stop_playback.is_set():
            self._stop_playback.set()
            log.info("barge-in", extra={"channel": self.channel_id, "by": why})

    # ---- input ---------------------------------------------------------------------------------
    def on_digit(self, digit: str) -> None:
        self._barge_in("dtmf")
        self.events.put_nowait(Digit(digit))

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
        if isinstance(event, SpeechHeld):
            guard = (time.monotonic() - self._prompt_started) * 1000 < self.config.barge_in_guard_ms
            if self.config.barge_in and not guard:
                self._barge_in("speech")
        elif isinstance(event, UtteranceEnded):
            # start decoding now (it grabs the utterance before the next frame is pushed)
            task = asyncio.ensure_future(self._recognize(event))
            self._decoding.add(task)
            task.add_done_callback(self._decoding.discard)
            return True
        elif isinstance(event, NoInput) and not self.playing:
            self.events.put_nowait(Silence(event.silence_ms / 1000))
        return False

    async def _recognize(self, ended: UtteranceEnded) -> None:
        t0 = time.monotonic()
        try:
            result = await self.listener.result()
        except VoicebotError as exc:
            log.error("speech recognition failed", extra={"channel": self.channel_id, "error": str(exc)})
            self.events.put_nowait(exc)  # the conversation hands the caller to a human
            return
        log.info("heard", extra={"channel": self.channel_id, "text": result.text,
                                 "confidence": round(result.confidence, 2), "speech_ms": ended.speech_ms,
                                 "decode_ms": int((time.monotonic() - t0) * 1000)})
        self.events.put_nowait(Utterance(result.text, result.confidence))
