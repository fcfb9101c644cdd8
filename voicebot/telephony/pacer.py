"""The media clock: one thread sends every call's outgoing RTP, 20 ms apart.

The event loop runs everything else of every call (VAD, endpointing, the dialogue, ARI); when it
is busy, or waits for a core behind the decoders, a packet paced on the loop goes out late and the
caller hears a gap. Measured through Asterisk at 20 calls on 2 cores: 100 gaps over 40 ms with the
pacing on the loop. So playback is handed to this thread: the loop encodes a whole prompt (cheap,
numpy) and the thread only stamps headers and calls ``sendto`` on the schedule. The loop's delays
no longer reach the caller; the thread's own delays are bounded by the GIL's switch interval.

Each playback keeps its own absolute schedule (``start + n × 20 ms``: no drift, first frame at
once). After a stall longer than ``STALL_S`` the schedule is re-based instead of bursting the
backlog, and the marker bit starts a new talk spurt, as ``RtpSender.stream`` does on the loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from voicebot.telephony.rtp import FRAME_MS, RtpSender

log = logging.getLogger("voicebot.rtp")

STEP_S = FRAME_MS / 1000
STALL_S = 0.1


class Playback:
    """One prompt being sent. ``done`` resolves, on the loop that started it, to the seconds sent."""

    def __init__(self, sender: RtpSender, send: Callable[[bytes], None], payloads: list[bytes],
                 done: asyncio.Future, start: float) -> None:
        self.sender = sender
        self.send = send
        self.payloads = payloads
        self.done = done
        self.loop = done.get_loop()
        self.start = start
        self.sent = 0
        self.marker = True
        self.stalls = 0
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Send nothing more (barge-in, hang-up); ``done`` then resolves with what went out."""
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    @property
    def due(self) -> float:
        return self.start + self.sent * STEP_S

    def send_next(self, now: float) -> bool:
        """Send the next frame (True while more remain)."""
        late = now - self.due
        if late > STALL_S:
            self.stalls += 1
            self.start += late
            self.marker = True
        s = self.sender
        try:
            s.send_packet(s.codec.payload_type, self.payloads[self.sent], self.marker, send=self.send)
        except OSError as exc:  # socket buffer full or closed under us: that frame is lost
            log.debug("rtp frame not sent", extra={"error": str(exc)})
        s.timestamp = (s.timestamp + s.codec.samples_per_frame) & 0xFFFFFFFF
        self.marker = False
        self.sent += 1
        return self.sent < len(self.payloads)

    def finish(self) -> None:
        seconds = self.sent * STEP_S
        try:
            self.loop.call_soon_threadsafe(_resolve, self.done, seconds)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _resolve(future: asyncio.Future, value: float) -> None:
    if not future.done():
        future.set_result(value)


class Pacer:
    """The thread and its schedule (a heap of playbacks by the time their next frame is due)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Playback]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def play(self, sender: RtpSender, send: Callable[[bytes], None], payloads: list[bytes]) -> Playback:
        """Start sending ``payloads`` (one per 20 ms frame) now; call from the event loop."""
        done = asyncio.get_running_loop().create_future()
        playback = Playback(sender, send, payloads, done, self.clock())
        if not payloads:
            _resolve(done, 0.0)
            return playback
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rtp-pacer", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (playback.due, next(self._order), playback))
            self._cond.notify()
        return playback

    @property
    def active(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, _, playback = self._heap[0]
                delay = due - self.clock()
                if delay > 0 and not playback.stopped:
                    self._cond.wait(delay)  # a new playback may be due sooner: look again
                    continue
                heapq.heappop(self._heap)
            try:
                more = not playback.stopped and playback.send_next(self.clock())
            except Exception:  # never let one call's bad frame stop every call's voice
                log.exception("rtp pacer: sending a frame failed")
                more = False
            if more:
                with self._cond:
                    heapq.heappush(self._heap, (playback.due, next(self._order), playback))
            else:
                playback.finish()


_pacer: Pacer | None = None
_pacer_lock = threading.Lock()


def get_pacer() -> Pacer:
    """The process-wide media clock (its thread starts with the first playback)."""
    global _pacer
    with _pacer_lock:
        if _pacer is None:
            _pacer = Pacer()
        return _pacer
