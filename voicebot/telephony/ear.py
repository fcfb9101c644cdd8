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
from voicebot.speech.turn_end import looks_complete
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
    # overload and failure bounds: past them a caller is held or handed to a human, never stranded
    max_calls: int = 40            # calls in the bot at once; more go straight to the human route
    max_pending_decodes: int = 8   # utterances waiting for or in ASR (all calls); more: a human
    hold_after_s: float = 2.0      # a decode slower than this: the caller hears the holding line
    decode_timeout_s: float = 8.0  # a decode slower than this: the caller goes to a human
    deadman_s: float = 8.0         # the dialplan takes a call back this long after the bot stopped
                                   # keeping it alive (SIGKILL, hang); refreshed every third of it

    def validate(self) -> None:
        if self.barge_in_guard_ms < 0:
            raise ValueError("barge_in_guard_ms: must not be negative")
        if self.turn_timeout_s <= 0:
            raise ValueError("turn_timeout_s: must be positive")
        if not 0 < self.queue_status_timeout_s <= 0.5:
            raise ValueError("queue_status_timeout_s: must be in (0, 0.5]: a caller never waits longer on AMI")
        if self.max_calls < 1:
            raise ValueError("max_calls: must be at least 1")
        if self.max_pending_decodes < 1:
            raise ValueError("max_pending_decodes: must be at least 1")
        if not 0 < self.hold_after_s < self.decode_timeout_s:
            raise ValueError("hold_after_s: must be positive and below decode_timeout_s")
        if self.decode_timeout_s >= self.turn_timeout_s:
            raise ValueError("decode_timeout_s: must be below turn_timeout_s")
        if not 3 <= self.deadman_s <= 120:
            raise ValueError("deadman_s: must be between 3 and 120 seconds")


class Overloaded(EngineError):
    """Speech recognition is saturated (queue full or a decode past its bound): a human takes over."""


class DecodeGate:
    """The process-wide bound on utterances waiting for or in the decoding pool. Shared by every
    call's ``Ear``; when full, a new utterance is not queued behind the others (its caller would
    wait in silence) but handed to a human at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0

    def try_enter(self) -> bool:
        if self.pending >= self.limit:
            return False
        self.pending += 1
        return True

    def leave(self) -> None:
        self.pending = max(0, self.pending - 1)


class Ear:
    def __init__(self, listener: Listener, config: VoiceConfig, speaker: Speaker | None = None,
                 channel_id: str = "", end_silence_ms: int = 0, gate: DecodeGate | None = None) -> None:
        self.listener = listener
        self.config = config
        self.gate = gate or DecodeGate(config.max_pending_decodes)
        self.decoding_since: float | None = None  # monotonic start of the oldest decode in flight
        self.busy = asyncio.Event()  # set while a decode is in flight
        self._eos_ms: int | None = None  # the silence an early end of turn waited (complete_end_ms)
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
                # a speculation the caller talks over costs a decode: only while the pool has room
                self.listener.speculate = self.gate.pending < max(1, self.gate.limit // 2)
                decode_started = False
                for event in self.listener.push(frame) + self._end_if_complete():
                    decode_started |= self._on_event(event)
                if decode_started:
                    # let the decode task take its utterance before the next frame is pushed
                    # (Queue.get does not yield while frames are waiting)
                    await asyncio.sleep(0)
        finally:
            for task in self._decoding:
                task.cancel()

    def _end_if_complete(self) -> list:
        """End the turn early when the speculative transcript is already a whole sentence."""
        listener = self.listener
        endpointer = getattr(listener, "endpointer", None)
        end_ms = endpointer.config.complete_end_ms if endpointer is not None else 0
        if not end_ms or endpointer.silence_ms < end_ms:
            return []
        text = listener.speculated_text()
        if not text or not looks_complete(text):
            return []  # still decoding, or it sounds unfinished: the full end_silence_ms wait
        self._eos_ms = endpointer.silence_ms
        return listener.end_turn()

    def _on_event(self, event) -> bool:
        """Handle one endpointer event; True when it started a decode."""
        speaker = self.speaker
        if isinstance(event, SpeechHeld):
            if self.config.barge_in and speaker is not None and speaker.playing and speaker.past_echo_guard():
                speaker.barge_in("speech")
        elif isinstance(event, UtteranceEnded):
            # start decoding now (it grabs the utterance before the next frame is pushed)
            eos_ms, self._eos_ms = self._eos_ms, None
            task = asyncio.ensure_future(self._recognize(event, eos_ms))
            self._decoding.add(task)
            task.add_done_callback(self._decoding.discard)
            return True
        elif isinstance(event, NoInput) and not (speaker is not None and speaker.playing) and not self._decoding:
            # (while an utterance is being decoded the caller has spoken: that is no silence)
            self.events.put_nowait((Silence(event.silence_ms / 1000), {}))
        return False

    async def _recognize(self, ended: UtteranceEnded, eos_ms: int | None = None) -> None:
        t0 = time.monotonic()
        if not self.gate.try_enter():
            self.listener.discard_oldest()
            self._fail(Overloaded(f"{self.gate.pending} utterances already wait for speech recognition"))
            return
        if self.decoding_since is None:
            self.decoding_since = t0
            self.busy.set()
        try:
            async with asyncio.timeout(self.config.decode_timeout_s):
                result = await self.listener.result()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._fail(Overloaded(f"no transcript after {self.config.decode_timeout_s:g} s"))
            return
        except Exception as exc:  # noqa: BLE001 - any failure of the engine: the caller goes to a human
            self._fail(exc if isinstance(exc, VoicebotError) else EngineError(f"{type(exc).__name__}: {exc}"))
            return
        finally:
            self.gate.leave()
            self.decoding_since = None if len(self._decoding) <= 1 else time.monotonic()
            if self.decoding_since is None:
                self.busy.clear()
        asr_ms = int((time.monotonic() - t0) * 1000)
        speculative = self.listener.last_speculative
        log.info("heard", extra={"channel": self.channel_id, "text": redact(result.text),
                                 "confidence": round(result.confidence, 2), "speech_ms": ended.speech_ms,
                                 "asr_ms": asr_ms})  # the same names as the turn's timings
        # asr_ms: from the end of the turn; a speculative decode started during the wait
        eos_wait = eos_ms if eos_ms is not None else self.end_silence_ms if ended.reason == "silence" else 0
        # why a slow turn was slow: decode_ms is the decode itself (a speculative one began
        # during the wait), decode_wait_ms how long it first waited for a thread of the pool
        timings = {"eos_wait_ms": eos_wait, "asr_ms": asr_ms, "speculative": int(speculative),
                   "decode_ms": int(result.decode_s * 1000)}
        if self.listener.last_wait_ms is not None:
            timings["decode_wait_ms"] = self.listener.last_wait_ms
        self.events.put_nowait((Utterance(result.text, result.confidence), timings))

    def _fail(self, error: Exception) -> None:
        log.error("speech recognition failed", extra={"channel": self.channel_id, "error": str(error)})
        self.events.put_nowait((error, {}))
