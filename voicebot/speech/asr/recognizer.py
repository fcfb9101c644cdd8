"""The async face of ASR for the event loop: ``Recognizer`` (push / finish) and ``Listener``
(VAD endpointer + recognizer). Everything heavy runs in the bounded decoding pool.

A closed question is announced with ``Listener.expect(choices)``: while it is set, an engine
with ``closed_sets`` scores each ended utterance against the choices instead of transcribing it,
and ``result()`` returns the chosen phrase as the text ("" for none of them), so the dialogue
reads "ja"/"nej"/"pas" as if it had been transcribed. Other engines transcribe as before.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from voicebot.speech.asr.base import AsrEngine, AsrResult, AsrStream, Choice
from voicebot.speech.endpointer import (Endpointer, Event, SpeechDiscarded, SpeechPaused, SpeechResumed,
                                       SpeechStarted, UtteranceEnded)

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Utterance:
    """One stream and the audio not yet fed to it (for streaming engines)."""

    def __init__(self, stream: AsrStream | None) -> None:
        self.stream = stream  # streaming engines open it in the pool (Kaldi takes ~100 ms)
        self.pending: list[np.ndarray] = []
        self.drain: concurrent.futures.Future | None = None
        self.partial = ""
        self.dropped = False


class PendingResult:
    """An ended utterance; ``await`` it for the final result (awaiting it is optional)."""

    def __init__(self, recognizer: Recognizer, utterance: _Utterance | None) -> None:
        self._recognizer, self._utterance = recognizer, utterance

    def __await__(self):
        return self._recognizer._complete(self._utterance).__await__()


class ClosedPending:
    """An ended utterance to score against a closed set; ``await`` it for the result."""

    def __init__(self, recognizer: Recognizer, samples: np.ndarray, choices: tuple[Choice, ...],
                 on_start: Callable[[], None] | None = None) -> None:
        self._recognizer, self._samples, self._choices = recognizer, samples, choices
        self._on_start = on_start

    def __await__(self):
        return self._recognizer._score(self._samples, self._choices, self._on_start).__await__()


class Recognizer:
    """One utterance at a time for one call. ``push`` never blocks; ``finish`` awaits the result.

    For a streaming engine pushed audio is decoded in the pool as it arrives (in order, one job
    at a time per utterance) and ``partial`` follows it; a segment engine just buffers.
    ``detach()`` ends the utterance synchronously (new audio starts the next one) and returns an
    awaitable for its result, so decoding one utterance never races with the next.
    """

    def __init__(self, engine: AsrEngine, pool: concurrent.futures.Executor, rate: int) -> None:
        self.engine, self.pool, self.rate = engine, pool, rate
        self.streaming = engine.streaming
        self._lock = threading.Lock()
        self._current: _Utterance | None = None

    @property
    def partial(self) -> str:
        current = self._current
        return current.partial if current else ""

    def reset(self) -> None:
        """Drop the current utterance (a decode job in flight stops at its next chunk)."""
        with self._lock:
            if self._current is not None:
                self._current.dropped = True
            self._current = None

    def push(self, samples: np.ndarray) -> None:
        with self._lock:
            if self._current is None:
                self._current = _Utterance(None if self.streaming else self.engine.open_stream(self.rate))
            utt = self._current
            if not self.streaming:
                assert utt.stream is not None
                utt.stream.accept(samples)
                return
            utt.pending.append(np.asarray(samples, dtype=np.int16))
            if utt.drain is None or utt.drain.done():
                utt.drain = self.pool.submit(self._drain, utt)

    def _drain(self, utt: _Utterance) -> None:
        while True:
            with self._lock:
                if utt.dropped or not utt.pending:
                    return
                chunk = np.concatenate(utt.pending)
                utt.pending = []
            if utt.stream is None:
                utt.stream = self.engine.open_stream(self.rate)
            partial = utt.stream.accept(chunk)
            if partial is not None:
                utt.partial = partial

    def detach(self) -> PendingResult:
        """End the current utterance now; await the returned object for its final result."""
        with self._lock:
            utt, self._current = self._current, None
        return PendingResult(self, utt)

    async def finish(self) -> AsrResult:
        """The final result of everything pushed since the last finish/reset."""
        return await self.detach()

    def score(self, samples: np.ndarray, choices: Sequence[Choice],
              on_start: Callable[[], None] | None = None) -> ClosedPending:
        """Score one whole utterance against ``choices`` (the engine must have ``closed_sets``);
        await the returned object for an ``AsrResult`` whose text is the chosen phrase.
        ``on_start`` is called in the pool thread when the scoring begins."""
        return ClosedPending(self, np.asarray(samples, dtype=np.int16), tuple(choices), on_start)

    async def _score(self, samples: np.ndarray, choices: tuple[Choice, ...],
                     on_start: Callable[[], None] | None = None) -> AsrResult:
        loop = asyncio.get_running_loop()

        closed = await loop.run_in_executor(self.pool, _announced(on_start, self.engine.score_choices),
                                            samples, self.rate, choices)
        if closed.key is None and len(samples):
            # none of the expected answers: the caller may have said something new ("ja, og
            # hvad med mit kørekort?"), so transcribe it freely rather than lose it
            return await loop.run_in_executor(self.pool, self.engine.transcribe, samples, self.rate)
        return closed.as_asr_result(len(samples) / self.rate, self.engine.name)

    async def decode_segment(self, samples: np.ndarray, on_start: Callable[[], None] | None = None) -> AsrResult:
        """Decode one whole utterance now (segment engines), independent of pushed audio;
        ``on_start`` is called in the pool thread when the decode begins."""
        stream = self.engine.open_stream(self.rate)
        stream.accept(np.asarray(samples, dtype=np.int16))

        return await asyncio.get_running_loop().run_in_executor(self.pool, _announced(on_start, stream.finish))

    async def _complete(self, utt: _Utterance | None) -> AsrResult:
        empty = AsrResult("", 0.0, 0.0, 0.0, self.engine.name)
        if utt is None:
            return empty
        while True:
            with self._lock:
                drain = utt.drain
                if (drain is None or drain.done()) and utt.pending:  # pushed as the drain ended
                    drain = utt.drain = self.pool.submit(self._drain, utt)
            if drain is None or (drain.done() and not utt.pending):
                break
            await asyncio.wrap_future(drain)
        if utt.stream is None:
            return empty
        return await asyncio.get_running_loop().run_in_executor(self.pool, utt.stream.finish)


class SpeculationStats:
    """Process-wide counts of speculative decodes (for /health and `bench calls`): ``used``
    became the turn's result; ``wasted`` ran (or was running) in the pool and was thrown away
    because the caller went on; ``skipped`` was dropped while still queued (it cost nothing)."""

    def __init__(self) -> None:
        self.started = self.used = self.wasted = self.skipped = 0

    def as_dict(self) -> dict[str, int]:
        return {"started": self.started, "used": self.used, "wasted": self.wasted, "skipped": self.skipped}


SPECULATIONS = SpeculationStats()


class _Speculation:
    """A decode started at a pause in the caller's speech, before the end of the turn."""

    def __init__(self, samples: np.ndarray, choices: tuple[Choice, ...] | None, task: asyncio.Task) -> None:
        self.length, self.choices, self.task = len(samples), choices, task
        self.queued_at = time.monotonic()
        self.began_at: float | None = None  # set by the pool thread when the decode begins

    def began(self) -> None:
        """Called in the pool thread as the decode begins."""
        self.began_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.began_at is not None

    @property
    def wait_ms(self) -> int | None:
        """How long the decode waited for a thread of the pool (None: it has not begun)."""
        return None if self.began_at is None else int((self.began_at - self.queued_at) * 1000)

    def drop(self) -> None:
        self.task.cancel()  # a job still queued in the pool is skipped
        if self.running or self.task.done():
            SPECULATIONS.wasted += 1
        else:
            SPECULATIONS.skipped += 1


class Listener:
    """VAD endpointing plus recognition: push 20 ms frames, await the result at UtteranceEnded.

    A streaming engine is fed from the onset (pre-roll included) so partials are live; a segment
    engine gets exactly the utterance the endpointer cut. For a segment engine decoding starts
    speculatively at a pause (``SpeechPaused``, ``speech.vad.pause_ms``): if the caller says nothing
    more, the utterance that ends is the same audio and that decode is its result, so most of the
    decode overlaps the end-of-turn wait; if the caller goes on, the speculation is dropped.
    """

    def __init__(self, endpointer: Endpointer, recognizer: Recognizer) -> None:
        self.endpointer, self.recognizer = endpointer, recognizer
        self._ended: collections.deque[PendingResult | ClosedPending | asyncio.Task] = collections.deque()
        self._speculated: collections.deque[_Speculation | None] = collections.deque()  # per ended utterance
        self._choices: tuple[Choice, ...] | None = None
        self._speculation: _Speculation | None = None
        self.speculate = True  # the ear turns it off under load (a dropped speculation costs CPU)
        self.last_speculative = False  # the result just returned came from a speculation
        self.last_wait_ms: int | None = None  # ...whose decode waited this long for a pool thread

    def expect(self, choices: Sequence[Choice] | None) -> None:
        """Score the next utterances against ``choices`` (a closed question) until changed;
        ``None`` or empty: transcribe freely. Ignored by engines without ``closed_sets``.
        A malformed set (a phrase in two choices) is logged and falls back to transcription,
        so the call goes on."""
        from voicebot.speech.asr.closed import build_candidates

        self._choices = tuple(choices) if choices else None
        if self._choices:
            try:
                build_candidates(self._choices)
            except ValueError as exc:
                log.warning("closed set ignored, transcribing instead: %s", exc)
                self._choices = None

    @property
    def expecting(self) -> tuple[Choice, ...] | None:
        """The closed set in force, if the engine can score it."""
        return self._choices if self._choices and self.recognizer.engine.closed_sets else None

    @property
    def partial(self) -> str:
        return self.recognizer.partial

    def push(self, frame: np.ndarray) -> list[Event]:
        was_in_speech = self.endpointer.in_speech
        events = self.endpointer.push(frame)
        rec = self.recognizer
        if rec.streaming and was_in_speech:
            rec.push(frame)
        return self._handle(events)

    def speculated_text(self) -> str | None:
        """The transcript of the speculation in flight, once it is done (None before, or none)."""
        spec = self._speculation
        if spec is None or not spec.task.done() or spec.task.cancelled() or spec.task.exception() is not None:
            return None
        return spec.task.result().text

    def end_turn(self) -> list[Event]:
        """End the utterance now (its speculative transcript is complete): the events as ``push``."""
        return self._handle(self.endpointer.end_now())

    def _handle(self, events: list[Event]) -> list[Event]:
        rec = self.recognizer
        for event in events:
            if isinstance(event, SpeechStarted):
                rec.reset()
                self._drop_speculation()
                if rec.streaming:
                    rec.push(event.samples)
            elif isinstance(event, SpeechPaused):
                self._speculate(event.samples)
            elif isinstance(event, SpeechResumed):
                self._drop_speculation()
            elif isinstance(event, SpeechDiscarded):
                rec.reset()
                self._drop_speculation()
            elif isinstance(event, UtteranceEnded):
                choices = self.expecting
                spec, self._speculation = self._speculation, None
                if spec is not None:
                    if spec.length == len(event.samples) and spec.choices == choices:
                        rec.reset()
                        SPECULATIONS.used += 1
                        self._end(spec.task, spec)
                        continue
                    spec.drop()
                if choices:
                    rec.reset()
                    self._end(rec.score(event.samples, choices))
                    continue
                if not rec.streaming:
                    rec.reset()
                    rec.push(event.samples)
                self._end(rec.detach())
        return events

    def _end(self, pending, speculation: _Speculation | None = None) -> None:
        self._ended.append(pending)
        self._speculated.append(speculation)

    def _speculate(self, samples: np.ndarray) -> None:
        rec = self.recognizer
        if not self.speculate or rec.streaming or not rec.engine.speculative:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # pushed outside an event loop (offline evaluation): decode at the end only
        self._drop_speculation()
        choices = self.expecting
        spec = _Speculation(samples, choices, None)  # type: ignore[arg-type]
        began = spec.began
        work = rec.score(samples, choices, began) if choices else rec.decode_segment(samples, began)
        spec.task = asyncio.ensure_future(_awaited(work))
        SPECULATIONS.started += 1
        self._speculation = spec

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.drop()
            self._speculation = None

    async def result(self) -> AsrResult:
        """The transcript of the oldest ended utterance not yet collected (after UtteranceEnded).

        The utterance was detached when it ended, so this may be awaited later, or from a task
        that starts after more frames were pushed."""
        if not self._ended:
            raise RuntimeError("Listener.result() called without an UtteranceEnded event")
        pending = self._ended.popleft()
        spec = self._speculated.popleft()
        result = await pending
        # set after the await, so each caller reads its own (utterances may be awaited together)
        self.last_speculative = spec is not None
        self.last_wait_ms = spec.wait_ms if spec is not None else None
        return result

    def discard_oldest(self) -> None:
        """Drop the oldest ended utterance without decoding it (overload: nobody will wait for it)."""
        if self._ended:
            pending = self._ended.popleft()
            self._speculated.popleft()
            if isinstance(pending, asyncio.Task):
                pending.cancel()

    def reset(self) -> None:
        """Forget partial speech and restart the no-input timer (call when a prompt ends).
        Utterances that already ended are still delivered by ``result()``."""
        self.endpointer.reset()
        self.recognizer.reset()
        self._drop_speculation()


def _announced(on_start: Callable[[], None] | None, fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, calling ``on_start`` first (in the pool thread, when the job begins)."""
    if on_start is None:
        return fn

    def job(*args) -> T:
        on_start()
        return fn(*args)

    return job


async def _awaited(work) -> AsrResult:
    return await work
