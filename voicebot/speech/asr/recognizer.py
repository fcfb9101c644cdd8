"""The async face of ASR for the event loop: ``Recognizer`` (push / finish) and ``Listener``
(VAD endpointer + recognizer). Everything heavy runs in the bounded decoding pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np

from voicebot.speech.asr.base import AsrEngine, AsrResult, AsrStream
from voicebot.speech.endpointer import Endpointer, Event, SpeechDiscarded, SpeechStarted, UtteranceEnded


class Recognizer:
    """One utterance at a time for one call. ``push`` never blocks; ``finish`` awaits the result.

    For a streaming engine pushed audio is decoded in the pool as it arrives (in order, one job
    at a time per recognizer) and ``partial`` follows it; a segment engine just buffers.
    """

    def __init__(self, engine: AsrEngine, pool: concurrent.futures.Executor, rate: int) -> None:
        self.engine, self.pool, self.rate = engine, pool, rate
        self.streaming = engine.streaming
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Drop the current utterance (a job still in flight finishes on the old stream)."""
        with self._lock:
            self._stream: AsrStream | None = None
            self._pending: list[np.ndarray] = []
            self._drain: concurrent.futures.Future | None = None
            self.partial = ""

    def push(self, samples: np.ndarray) -> None:
        with self._lock:
            if self._stream is None:
                self._stream = self.engine.open_stream(self.rate)
            if not self.streaming:
                self._stream.accept(samples)
                return
            self._pending.append(np.asarray(samples, dtype=np.int16))
            if self._drain is None or self._drain.done():
                self._drain = self.pool.submit(self._drain_pending, self._stream)

    def _drain_pending(self, stream: AsrStream) -> None:
        while True:
            with self._lock:
                if stream is not self._stream or not self._pending:
                    return
                chunk = np.concatenate(self._pending)
                self._pending = []
            partial = stream.accept(chunk)
            if partial is not None and stream is self._stream:
                self.partial = partial

    async def finish(self) -> AsrResult:
        """The final result of everything pushed since the last finish/reset; then reset."""
        with self._lock:
            stream, drain = self._stream, self._drain
        if stream is None:
            return AsrResult("", 0.0, 0.0, 0.0, self.engine.name)
        while drain is not None:
            await asyncio.wrap_future(drain)
            with self._lock:
                drain = None
                if self._pending and stream is self._stream:  # pushed after the drain ended
                    drain = self._drain = self.pool.submit(self._drain_pending, stream)
        self.reset()
        return await asyncio.get_running_loop().run_in_executor(self.pool, stream.finish)


class Listener:
    """VAD endpointing plus recognition: push 20 ms frames, await the result at UtteranceEnded.

    A streaming engine is fed from the onset (pre-roll included) so partials are live; a segment
    engine gets exactly the utterance the endpointer cut.
    """

    def __init__(self, endpointer: Endpointer, recognizer: Recognizer) -> None:
        self.endpointer, self.recognizer = endpointer, recognizer

    @property
    def partial(self) -> str:
        return self.recognizer.partial

    def push(self, frame: np.ndarray) -> list[Event]:
        was_in_speech = self.endpointer.in_speech
        events = self.endpointer.push(frame)
        rec = self.recognizer
        for event in events:
            if isinstance(event, SpeechStarted):
                rec.reset()
                if rec.streaming:
                    rec.push(event.samples)
            elif isinstance(event, SpeechDiscarded):
                rec.reset()
            elif isinstance(event, UtteranceEnded) and not rec.streaming:
                rec.reset()
                rec.push(event.samples)
        if rec.streaming and was_in_speech:
            rec.push(frame)
        return events

    async def result(self) -> AsrResult:
        """The transcript of the utterance that just ended (call after UtteranceEnded)."""
        return await self.recognizer.finish()

    def reset(self) -> None:
        """Forget partial speech and restart the no-input timer (call when a prompt ends)."""
        self.endpointer.reset()
        self.recognizer.reset()
