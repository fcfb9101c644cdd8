"""The bot's voice on one call: plays audio and owns barge-in.

One object decides whether the bot is talking and stops it: the ear reports caller speech and key
presses here (``barge_in``), the conversation plays answers here (``play``). So an answer goes
straight from the conversation to the media leg, and "may the caller interrupt now?" (the echo
guard) is answered in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("voicebot.speaker")


@dataclass(frozen=True)
class Played:
    seconds: float
    interrupted: bool  # barge-in: the dialogue knows the caller did not hear it all
    started_at: float = 0.0  # time.monotonic() of the first frame sent


class Speaker:
    def __init__(self, play: Callable[[np.ndarray, asyncio.Event], "asyncio.Future[float] | object"],
                 rate: int, *, guard_ms: int = 300, channel_id: str = "",
                 on_prompt_end: Callable[[bool], None] | None = None) -> None:
        self._play = play  # MediaLeg.play(samples, stop) -> seconds played
        self.rate = rate
        self.guard_ms = guard_ms
        self.channel_id = channel_id
        self.on_prompt_end = on_prompt_end
        self.playing = False
        self._started = 0.0
        self._stop = asyncio.Event()
        self._closed = False

    def past_echo_guard(self) -> bool:
        """Caller speech this soon after a prompt starts may be the line's echo of the bot."""
        return (time.monotonic() - self._started) * 1000 >= self.guard_ms

    def barge_in(self, why: str) -> bool:
        """Stop the current prompt (True when one was playing)."""
        if self.playing and not self._stop.is_set():
            self._stop.set()
            log.info("barge-in", extra={"channel": self.channel_id, "by": why})
            return True
        return False

    def stop(self) -> None:
        """The caller hung up: stop playback, and refuse any later prompt (a hang-up that lands
        while the next prompt is being fetched must not leave it playing to nobody)."""
        self._closed = True
        self._stop.set()

    async def play(self, audio: np.ndarray) -> Played:
        if not len(audio) or self._closed:
            return Played(0.0, self._closed, time.monotonic())
        self.playing = True
        self._started = time.monotonic()
        self._stop = stop = asyncio.Event()
        interrupted = False
        started_at = time.monotonic()
        try:
            seconds = await self._play(audio, stop)
            interrupted = stop.is_set()
        finally:
            self.playing = False
            if self.on_prompt_end is not None:
                self.on_prompt_end(interrupted)
        if interrupted:
            log.info("prompt interrupted", extra={"channel": self.channel_id, "played_s": round(seconds, 2),
                                                  "of_s": round(len(audio) / self.rate, 2)})
        return Played(seconds, interrupted, started_at)
