"""RTP for the media legs: wire format and codecs (pure), a reorder buffer, a UDP endpoint and a
20 ms pacer.

Wire ≠ socket ≠ logic: ``pack``/``parse`` and the codecs are pure functions tested on bytes;
``RtpEndpoint`` only moves datagrams; ``RtpSender`` owns timing.

ExternalMedia facts (DESIGN.md §3): slin16 is PT 118, 20 ms = 640 bytes of **big-endian** 16-bit
samples, timestamp step 320; ulaw is PT 0, 160 bytes. No SDP: both sides just know.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voicebot.speech.audio import ulaw_decode, ulaw_encode

log = logging.getLogger("voicebot.rtp")

FRAME_MS = 20
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False


def pack(p: RtpPacket) -> bytes:
    return _HEADER.pack(0x80, (0x80 if p.marker else 0) | (p.payload_type & 0x7F),
                        p.seq & 0xFFFF, p.timestamp & 0xFFFFFFFF, p.ssrc) + p.payload


def parse(data: bytes) -> RtpPacket | None:
    """Parse an RTP packet; None for anything that is not RTP version 2."""
    if len(data) < 12:
        return None
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    offset = 12 + 4 * (b0 & 0x0F)  # CSRCs
    if b0 & 0x10:  # header extension
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
    end = len(data)
    if b0 & 0x20:  # padding
        end -= data[-1]
    if offset > end:
        return None
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, data[offset:end], bool(b1 & 0x80))


@dataclass(frozen=True)
class Codec:
    name: str
    payload_type: int
    rate: int

    @property
    def samples_per_frame(self) -> int:
        return self.rate * FRAME_MS // 1000

    @property
    def frame_bytes(self) -> int:
        """Payload bytes of one 20 ms frame (μ-law: 1 byte a sample; slin16: 2)."""
        return self.samples_per_frame * (1 if self.name == "ulaw" else 2)

    def encode(self, samples: np.ndarray) -> bytes:
        if self.name == "ulaw":
            return ulaw_encode(samples)
        return samples.astype(">i2").tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        if self.name == "ulaw":
            return ulaw_decode(payload)
        return np.frombuffer(payload[: len(payload) // 2 * 2], dtype=">i2").astype(np.int16)


CODECS = {
    "slin16": Codec("slin16", 118, 16000),
    "ulaw": Codec("ulaw", 0, 8000),
}


class ReorderBuffer:
    """Put packets back in sequence order; drop duplicates and packets that come too late.

    Holds at most ``depth`` packets: a missing packet is given up on (a loss) once ``depth``
    later packets have arrived, so the added delay is at most depth × 20 ms. A packet from
    another SSRC starts a new stream (RFC 3550 §8.2), whose sequence numbers start anywhere:
    a PBX that bridges a new party natively forwards that party's packets as they are, and
    judged by the old stream's numbers half of all new streams would be "already played".
    """

    def __init__(self, depth: int = 3) -> None:
        self.depth = depth
        self.next_seq: int | None = None
        self.ssrc: int | None = None
        self.held: dict[int, RtpPacket] = {}
        self.lost = 0
        self.duplicates = 0

    def push(self, p: RtpPacket) -> list[RtpPacket]:
        out: list[RtpPacket] = []
        if self.ssrc is not None and p.ssrc != self.ssrc and self.next_seq is not None:
            # what the old stream left held is played first, in its order
            out = [self.held.pop(seq) for seq in sorted(self.held, key=lambda seq: (seq - self.next_seq) & 0xFFFF)]
            self.next_seq = None
        self.ssrc = p.ssrc
        if self.next_seq is None:
            self.next_seq = p.seq
        behind = (self.next_seq - p.seq) & 0xFFFF
        if 0 < behind < 0x8000 or p.seq in self.held:  # already played, or already held
            self.duplicates += 1
            return out
        self.held[p.seq] = p
        while self.held:
            if self.next_seq in self.held:
                out.append(self.held.pop(self.next_seq))
                self.next_seq = (self.next_seq + 1) & 0xFFFF
            elif len(self.held) > self.depth:  # give up on the gap: skip to the oldest held packet
                # in one step, so a crafted jump of 30,000 sequence numbers costs no more than 1
                gap = min((seq - self.next_seq) & 0xFFFF for seq in self.held)
                self.lost += gap
                self.next_seq = (self.next_seq + gap) & 0xFFFF
            else:
                break
        return out


class RtpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket: receives the peer's RTP and sends ours from the same port (symmetric RTP).

    The peer's address is fixed (``remote``) or learned from the first packet; from then on
    packets from any other address or port are dropped (``rejected``), so nobody else on the
    network can speak into a call.
    """

    def __init__(self, codec: Codec, on_frame: Callable[[np.ndarray], None],
                 remote: tuple[str, int] | None = None) -> None:
        self.codec = codec
        self.on_frame = on_frame
        self.on_loss: Callable[[int], None] | None = None  # frames given up on, before the next
        self.remote = remote
        self.transport: asyncio.DatagramTransport | None = None
        self.reorder = ReorderBuffer()
        self.received = 0
        self.rejected = 0
        self.first_packet = asyncio.Event()

    @classmethod
    async def open(cls, host: str, codec: Codec, on_frame: Callable[[np.ndarray], None],
                   remote: tuple[str, int] | None = None, port: int = 0) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(codec, on_frame, remote),
                                                       local_addr=(host, port))
        return proto

    @property
    def local_address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.remote is not None and tuple(addr[:2]) != tuple(self.remote):
            self.rejected += 1
            return
        p = parse(data)
        if p is None or p.payload_type != self.codec.payload_type:
            return  # RFC 4733 events, comfort noise, junk: not audio
        if self.remote is None:
            self.remote = addr
        self.received += 1
        self.first_packet.set()
        lost = self.reorder.lost
        ready = self.reorder.push(p)
        if self.reorder.lost != lost and self.on_loss is not None:
            self.on_loss(self.reorder.lost - lost)
        for q in ready:
            self.on_frame(self.codec.decode(q.payload))

    def send(self, payload: bytes) -> None:
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(payload, self.remote)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RtpSender:
    """Sends audio as RTP paced every 20 ms on an absolute schedule.

    The schedule is ``start + n × 20 ms`` so sleep jitter never accumulates (no drift). After a
    stall (the event loop was blocked) the schedule is re-based to now instead of bursting the
    backlog, and the marker bit tells the peer a new talk spurt began.
    """

    STALL_S = 0.1

    def __init__(self, endpoint: RtpEndpoint, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self.codec = endpoint.codec
        self.clock = clock
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.timestamp = int.from_bytes(os.urandom(4), "big")
        self.stalls = 0

    def frames(self, samples: np.ndarray) -> list[np.ndarray]:
        n = self.codec.samples_per_frame
        pad = (-len(samples)) % n
        if pad:
            samples = np.concatenate([samples, np.zeros(pad, dtype=np.int16)])
        return [samples[i:i + n] for i in range(0, len(samples), n)]

    async def play(self, samples: np.ndarray, stop: asyncio.Event | None = None) -> float:
        """Send ``samples``; return seconds actually sent (less than all when ``stop`` was set)."""
        frames = iter(self.frames(samples))
        return await self.stream(lambda: next(frames, None), stop)

    async def stream(self, next_frame: Callable[[], np.ndarray | None],
                     stop: asyncio.Event | None = None) -> float:
        """Send frames from ``next_frame()`` every 20 ms until it returns None or ``stop`` is set."""
        step = FRAME_MS / 1000
        start = self.clock()
        marker = True
        sent = 0
        while stop is None or not stop.is_set():
            due = start + sent * step
            delay = due - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            late = self.clock() - due  # measured after the sleep: the stall may happen inside it
            if late > self.STALL_S:
                self.stalls += 1
                start += late  # re-base: no burst after a stall
                marker = True
            if stop is not None and stop.is_set():
                break
            frame = next_frame()
            if frame is None:
                break
            self.send_packet(self.codec.payload_type, self.codec.encode(frame), marker)
            self.timestamp = (self.timestamp + self.codec.samples_per_frame) & 0xFFFFFFFF
            marker = False
            sent += 1
        return sent * step

    def send_packet(self, payload_type: int, payload: bytes, marker: bool = False,
                    timestamp: int | None = None) -> None:
        ts = self.timestamp if timestamp is None else timestamp
        self.endpoint.send(pack(RtpPacket(payload_type, self.seq, ts, self.ssrc, payload, marker)))
        self.seq = (self.seq + 1) & 0xFFFF

    async def send_dtmf(self, digit: str, payload_type: int = 101, duration_ms: int = 160) -> None:
        """Send one RFC 4733 telephone event (alongside any audio being streamed)."""
        event = "0123456789*#ABCD".index(digit.upper())
        ts = self.timestamp
        steps = max(1, duration_ms // FRAME_MS)
        for i in range(1, steps + 1):
            dur = i * self.codec.samples_per_frame
            self.send_packet(payload_type, struct.pack("!BBH", event, 10, dur), marker=(i == 1), timestamp=ts)
            await asyncio.sleep(FRAME_MS / 1000)
        for _ in range(3):  # the end packet, sent three times as the RFC recommends
            self.send_packet(payload_type, struct.pack("!BBH", event, 0x80 | 10, dur), timestamp=ts)
