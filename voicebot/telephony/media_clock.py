"""The media clock: a small process of its own that sends every call's outgoing RTP, 20 ms apart.

Why a process. The bot's voice must leave on time however busy the bot is. Paced on the event
loop, it waited behind VAD, the dialogue and ARI of 20 other calls; paced on a thread of the bot,
it waited for Python's GIL, held for up to 140 ms at a time by the decoding threads' Python code
(measured through Asterisk at 20 calls on 2 cores: 50-100 gaps over 40 ms either way). This
process shares no lock with the bot: it only stamps RTP headers and calls ``sendto`` on a
schedule, through each call's own UDP socket, handed over as a file descriptor (same port as the
bot receives on: symmetric RTP, which Asterisk's strict RTP expects).

Protocol: one ``SOCK_SEQPACKET`` socket pair, one message per datagram (``Wire``):
  bot -> clock   OPEN leg (+ the socket's fd) · PLAY leg play last frames... · STOP leg play · CLOSE leg
  clock -> bot   READY (once, at start) · DONE leg play frames_sent late_us (the worst frame's delay past its due time)
A playback starts with its first PLAY message (at once: no added latency) and keeps its own
absolute schedule (``start + n × 20 ms``: no drift). After a stall longer than ``STALL_S`` the
schedule is re-based instead of bursting the backlog, with the marker bit set. EOF on the control
socket (the bot is gone, even SIGKILLed) ends the process.

Run as ``python -m voicebot.telephony.media_clock FD`` by ``clock_client.py``; imports nothing
heavy so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

FRAME_S = 0.02
STALL_S = 0.1
MAX_MESSAGE = 60_000  # bytes per control message (well under the socket buffer)


class Wire:
    """Message layouts shared by both ends."""
    OPEN = struct.Struct("!cIBHH")      # b"O", leg, payload type, samples per frame, frame bytes; + "host:port"
    PLAY = struct.Struct("!cIIB")       # b"P", leg, play, last chunk; + frames
    STOP = struct.Struct("!cII")        # b"S", leg, play
    CLOSE = struct.Struct("!cI")        # b"C", leg
    DONE = struct.Struct("!cIIII")      # b"D", leg, play, frames sent, latest frame's lateness (µs)
    RTP = struct.Struct("!BBHII")


@dataclass
class Leg:
    sock: socket.socket
    remote: tuple[str, int]
    payload_type: int
    samples_per_frame: int
    frame_bytes: int
    ssrc: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    seq: int = field(default_factory=lambda: int.from_bytes(os.urandom(2), "big"))
    timestamp: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))

    def send(self, payload: bytes, marker: bool) -> None:
        header = Wire.RTP.pack(0x80, (0x80 if marker else 0) | self.payload_type, self.seq,
                               self.timestamp, self.ssrc)
        try:
            self.sock.sendto(header + payload, self.remote)
        except OSError:
            pass  # socket buffer full or the call just ended: that frame is lost, the clock goes on
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.samples_per_frame) & 0xFFFFFFFF


@dataclass
class Playback:
    leg: Leg
    leg_id: int
    play_id: int
    start: float
    frames: bytearray = field(default_factory=bytearray)
    complete: bool = False     # the last chunk has arrived
    sent: int = 0
    stalls: int = 0
    marker: bool = True
    stopped: bool = False
    late_max: float = 0.0      # seconds: how far behind its schedule the worst frame went out

    @property
    def due(self) -> float:
        return self.start + self.sent * FRAME_S

    @property
    def available(self) -> int:
        return len(self.frames) // self.leg.frame_bytes

    def send_next(self, now: float) -> None:
        late = now - self.due
        self.late_max = max(self.late_max, late)
        if late > STALL_S:
            self.stalls += 1
            self.start += late
            self.marker = True
        n = self.leg.frame_bytes
        self.leg.send(bytes(self.frames[self.sent * n:(self.sent + 1) * n]), self.marker)
        self.marker = False
        self.sent += 1


class Clock:
    """The schedule and the control protocol, without the process around them (tests use it)."""

    def __init__(self, control: socket.socket, clock=time.monotonic) -> None:
        self.control = control
        self.clock = clock
        self.legs: dict[int, Leg] = {}
        self.playing: dict[tuple[int, int], Playback] = {}
        self._heap: list[tuple[float, int, Playback]] = []
        self._order = itertools.count()

    def run(self) -> None:
        while self.step():
            pass

    def step(self) -> bool:
        """Wait for the next due frame or a control message; False when the bot has gone."""
        timeout = None
        if self._heap:
            timeout = max(0.0, self._heap[0][0] - self.clock())
        readable, _, _ = select.select([self.control], [], [], timeout)
        if readable and not self.receive():
            return False
        self.send_due()
        return True

    def receive(self) -> bool:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE + 64, 1)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        self.handle(data, fds)
        return True

    def handle(self, data: bytes, fds: list[int]) -> None:
        kind = data[:1]
        if kind == b"O":
            _, leg_id, pt, spf, frame_bytes = Wire.OPEN.unpack_from(data)
            host, _, port = data[Wire.OPEN.size:].decode().rpartition(":")
            if not fds:
                return
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            self.close_leg(leg_id)
            self.legs[leg_id] = Leg(sock, (host, int(port)), pt, spf, frame_bytes)
        elif kind == b"P":
            _, leg_id, play_id, last = Wire.PLAY.unpack_from(data)
            leg = self.legs.get(leg_id)
            if leg is None:
                self.done(leg_id, play_id, 0)
                return
            playback = self.playing.get((leg_id, play_id))
            if playback is None:
                for other in [p for (lid, _), p in self.playing.items() if lid == leg_id]:
                    self.finish(other)  # one voice per call: a new prompt ends the old one
                playback = self.playing[(leg_id, play_id)] = Playback(leg, leg_id, play_id, self.clock())
                self.schedule(playback)
            playback.frames += data[Wire.PLAY.size:]
            playback.complete = bool(last)
            if playback.complete and playback.available == 0:
                self.finish(playback)
        elif kind == b"S":
            _, leg_id, play_id = Wire.STOP.unpack_from(data)
            playback = self.playing.get((leg_id, play_id))
            if playback is not None:
                self.finish(playback)
        elif kind == b"C":
            _, leg_id = Wire.CLOSE.unpack_from(data)
            self.close_leg(leg_id)
        for fd in fds[1:]:
            os.close(fd)

    def close_leg(self, leg_id: int) -> None:
        for playback in [p for (lid, _), p in self.playing.items() if lid == leg_id]:
            self.finish(playback)
        leg = self.legs.pop(leg_id, None)
        if leg is not None:
            leg.sock.close()

    def schedule(self, playback: Playback) -> None:
        heapq.heappush(self._heap, (playback.due, next(self._order), playback))

    def send_due(self) -> None:
        while self._heap and self._heap[0][0] <= self.clock():
            _, _, playback = heapq.heappop(self._heap)
            if playback.stopped:
                continue
            if playback.sent >= playback.available:
                if playback.complete:
                    self.finish(playback)
                else:  # the rest of the prompt has not arrived yet: look again in a moment
                    playback.start += FRAME_S
                    self.schedule(playback)
                continue
            playback.send_next(self.clock())
            if playback.complete and playback.sent >= playback.available:
                self.finish(playback)
            else:
                self.schedule(playback)

    def finish(self, playback: Playback) -> None:
        if playback.stopped:
            return
        playback.stopped = True
        self.playing.pop((playback.leg_id, playback.play_id), None)
        self.done(playback.leg_id, playback.play_id, playback.sent, playback.late_max)

    def done(self, leg_id: int, play_id: int, frames: int, late: float = 0.0) -> None:
        try:
            self.control.send(Wire.DONE.pack(b"D", leg_id, play_id, frames, min(2**32 - 1, int(late * 1e6))))
        except OSError:
            pass  # the bot is gone; EOF ends the loop next


def raise_priority() -> None:
    """Ahead of everything else on the machine when allowed (root, CAP_SYS_NICE); else as is."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[1]))
    control.setblocking(False)
    raise_priority()
    control.send(b"R")  # ready: the bot waits for this before it hands over any call
    try:
        Clock(control).run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
