"""The endpointing state machine: frames in, speech events out.

Pure and synchronous (no asyncio, no I/O), so it is unit-tested on synthetic audio. Push 20 ms
int16 frames at 8 or 16 kHz; each ``push`` returns the events that frame caused::

    ep = Endpointer(VadConfig(), rate=16000)           # webrtcvad, or pass vad=any is_speech()
    for frame in frames:
        for event in ep.push(frame):
            ...  # SpeechStarted, SpeechHeld, UtteranceEnded, NoInput

- ``SpeechStarted`` when ``start_frames`` of the last ``start_window`` frames are voiced; it carries
  the pre-roll (audio from before the onset) so a streaming recognizer can be fed from there.
- ``SpeechHeld`` once per utterance, when ``barge_in_ms`` of voiced audio has been heard since
  the onset: the barge-in signal (a cough or a click does not reach it).
- ``SpeechPaused`` after ``pause_ms`` of silence inside an utterance (at most once per silence
  run): the utterance as ``UtteranceEnded`` would carry it if the caller said nothing more, so
  decoding can start during the rest of the end-of-turn wait. ``SpeechResumed`` when the caller
  goes on after a pause (that speculation is stale).
- ``UtteranceEnded`` after ``end_silence_ms`` of trailing silence, or at ``max_utterance_ms``;
  it carries the whole utterance (pre-roll included, trailing silence trimmed to ``tail_ms``).
- ``SpeechDiscarded`` instead of ``UtteranceEnded`` when less than ``min_speech_ms`` was voiced.
- ``NoInput`` once ``no_input_ms`` pass without speech after ``reset()`` (or the last utterance).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from voicebot.speech.vad import Vad, VadConfig, create_vad


@dataclass(frozen=True)
class SpeechStarted:
    samples: np.ndarray = field(repr=False)  # pre-roll + the onset frames
    at_ms: int                                # stream time of the first frame in `samples`


@dataclass(frozen=True)
class SpeechHeld:
    held_ms: int  # voiced audio since the onset; the barge-in threshold was reached


@dataclass(frozen=True)
class UtteranceEnded:
    samples: np.ndarray = field(repr=False)
    reason: Literal["silence", "max_length"]
    speech_ms: int  # voiced audio in the utterance


@dataclass(frozen=True)
class SpeechPaused:
    samples: np.ndarray = field(repr=False)  # what UtteranceEnded will carry if no speech follows
    speech_ms: int


@dataclass(frozen=True)
class SpeechResumed:
    paused_ms: int  # the pause the caller ended by speaking again


@dataclass(frozen=True)
class SpeechDiscarded:
    speech_ms: int  # a burst shorter than min_speech_ms (click, cough): forget what was started


@dataclass(frozen=True)
class NoInput:
    silence_ms: int


Event = SpeechStarted | SpeechHeld | SpeechPaused | SpeechResumed | UtteranceEnded | SpeechDiscarded | NoInput


class Endpointer:
    """One listener's endpointing state. Not thread-safe; one per call."""

    def __init__(self, config: VadConfig, rate: int, vad: Vad | None = None) -> None:
        self.config = config
        self.rate = rate
        self.vad = vad if vad is not None else create_vad(config, rate)
        self.frame_samples = rate * config.frame_ms // 1000
        ms = config.frame_ms
        self._pre_frames = config.pre_roll_ms // ms
        self._end_frames = max(1, config.end_silence_ms // ms)
        self._tail_frames = config.tail_ms // ms
        self._pause_frames = config.pause_ms // ms  # 0: no SpeechPaused
        self._max_frames = max(1, config.max_utterance_ms // ms)
        self._no_input_frames = max(1, config.no_input_ms // ms)
        self._history: collections.deque[tuple[np.ndarray, bool]] = collections.deque(
            maxlen=self._pre_frames + config.start_window)
        self.time_ms = 0
        self.reset()

    @property
    def in_speech(self) -> bool:
        return self._speech is not None

    @property
    def silence_ms(self) -> int:
        """Trailing silence of the utterance in progress (0 outside speech)."""
        return self._silence_run * self.config.frame_ms if self._speech is not None else 0

    def end_now(self) -> list[Event]:
        """End the utterance in progress now, as if its silence had reached ``end_silence_ms``
        (the caller of this knows the turn is over, e.g. its transcript is complete)."""
        if self._speech is None or not self._silence_run:
            return []
        return [self._end("silence")]

    def reset(self) -> None:
        """Forget any partial utterance and restart the no-input timer (call after a prompt)."""
        self._history.clear()
        self._speech: list[np.ndarray] | None = None
        self._voiced = 0
        self._silence_run = 0
        self._paused = False  # SpeechPaused sent for the current silence run
        self._held_sent = False
        self._idle_frames = 0
        self._no_input_armed = True

    def push(self, frame: np.ndarray) -> list[Event]:
        if len(frame) != self.frame_samples:
            raise ValueError(f"expected {self.frame_samples} samples ({self.config.frame_ms} ms "
                             f"at {self.rate} Hz), got {len(frame)}")
        voiced = bool(self.vad.is_speech(frame))
        self.time_ms += self.config.frame_ms
        if self._speech is None:
            return self._push_idle(frame, voiced)
        return self._push_speech(frame, voiced)

    # -- idle: waiting for an onset ------------------------------------------------------------

    def _push_idle(self, frame: np.ndarray, voiced: bool) -> list[Event]:
        self._history.append((frame, voiced))
        window = list(self._history)[-self.config.start_window:]
        if sum(v for _, v in window) >= self.config.start_frames:
            return self._start()
        self._idle_frames += 1
        if self._no_input_armed and self._idle_frames >= self._no_input_frames:
            self._no_input_armed = False
            return [NoInput(self._idle_frames * self.config.frame_ms)]
        return []

    def _start(self) -> list[Event]:
        frames = [f for f, _ in self._history]
        self._speech = frames
        self._voiced = sum(v for _, v in list(self._history)[-self.config.start_window:])
        self._silence_run = 0
        self._no_input_armed = False
        self._history.clear()
        start_ms = self.time_ms - len(frames) * self.config.frame_ms
        events: list[Event] = [SpeechStarted(np.concatenate(frames), start_ms)]
        return events + self._check_held()

    # -- in speech: waiting for the end ----------------------------------------------------------

    def _push_speech(self, frame: np.ndarray, voiced: bool) -> list[Event]:
        assert self._speech is not None
        self._speech.append(frame)
        events: list[Event] = []
        if voiced:
            if self._paused:
                events.append(SpeechResumed(self._silence_run * self.config.frame_ms))
                self._paused = False
            self._voiced += 1
            self._silence_run = 0
        else:
            self._silence_run += 1
        events += self._check_held()
        if (self._pause_frames and self._silence_run == self._pause_frames and self._silence_run < self._end_frames
                and self._voiced * self.config.frame_ms >= self.config.min_speech_ms):
            self._paused = True
            events.append(SpeechPaused(self._utterance_audio(), self._voiced * self.config.frame_ms))
        if self._silence_run >= self._end_frames:
            events.append(self._end("silence"))
        elif len(self._speech) >= self._max_frames:
            events.append(self._end("max_length"))
        return events

    def _check_held(self) -> list[Event]:
        held_ms = self._voiced * self.config.frame_ms
        if not self._held_sent and held_ms >= self.config.barge_in_ms:
            self._held_sent = True
            return [SpeechHeld(held_ms)]
        return []

    def _end(self, reason: Literal["silence", "max_length"]) -> UtteranceEnded | SpeechDiscarded:
        assert self._speech is not None
        speech_ms = self._voiced * self.config.frame_ms
        if speech_ms < self.config.min_speech_ms:
            self.reset()
            return SpeechDiscarded(speech_ms)
        event = UtteranceEnded(self._utterance_audio(), reason, speech_ms)
        self.reset()
        return event

    def _utterance_audio(self) -> np.ndarray:
        """The utterance so far, its trailing silence trimmed to ``tail_ms``."""
        assert self._speech is not None
        frames = self._speech
        drop = max(0, self._silence_run - self._tail_frames)
        if drop:
            frames = frames[:-drop]
        return np.concatenate(frames)
