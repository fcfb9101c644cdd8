"""RTP wire format, codecs, reordering and pacing."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from voicebot.speech.audio import ulaw_decode, ulaw_encode
from voicebot.telephony.rtp import CODECS, ReorderBuffer, RtpPacket, RtpSender, pack, parse


def test_pack_parse_round_trip_and_header_bytes():
    p = RtpPacket(118, 0xFFFF, 0x01020304, 0xDEADBEEF, b"\x00\x01", marker=True)
    data = pack(p)
    assert data[:2] == bytes([0x80, 0x80 | 118])
    assert data[2:4] == b"\xff\xff" and data[4:8] == b"\x01\x02\x03\x04"
    assert parse(data) == p


def test_parse_rejects_non_rtp_and_skips_csrc_and_padding():
    assert parse(b"\x00" * 12) is None  # version 0
    assert parse(b"\x80") is None
    # one CSRC, padding of 2 bytes
    data = bytes([0xA1, 0]) + b"\x00\x01" + b"\x00" * 4 + b"\x00" * 4 + b"CSRC" + b"ab" + b"\x00\x02"
    p = parse(data)
    assert p is not None and p.payload == b"ab"


def test_slin16_is_big_endian_on_the_wire():
    codec = CODECS["slin16"]
    samples = np.array([1, -2, 0x1234], dtype=np.int16)
    wire = codec.encode(samples)
    assert wire == b"\x00\x01\xff\xfe\x12\x34"
    assert np.array_equal(codec.decode(wire), samples)
    assert codec.payload_type == 118 and codec.samples_per_frame == 320


def test_ulaw_round_trip_is_close_and_matches_g711_points():
    x = (np.sin(np.linspace(0, 20, 8000)) * 20000).astype(np.int16)
    y = ulaw_decode(ulaw_encode(x))
    assert np.max(np.abs(y.astype(int) - x)) < 700  # μ-law step at full scale is ~1k
    assert ulaw_encode(np.array([0], np.int16)) == b"\xff"  # G.711: zero encodes as 0xFF
    assert ulaw_decode(b"\x80")[0] == 32124 and ulaw_decode(b"\x00")[0] == -32124


def test_the_ulaw_table_encodes_every_sample_as_the_g711_formula():
    from voicebot.speech.audio import _ulaw_encode_exact

    every = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    assert ulaw_encode(every) == _ulaw_encode_exact(every).tobytes()
    assert ulaw_encode(np.array([-1, 1, 32767, -32768], np.int16)) == b"\x7f\xff\x80\x00"
    wide = np.array([0, 40000, -40000], np.int32)  # other integer types are clipped, not wrapped
    assert ulaw_encode(wide) == ulaw_encode(np.array([0, 32767, -32768], np.int16))


def pk(seq: int) -> RtpPacket:
    return RtpPacket(0, seq, seq * 160, 1, bytes([seq & 0xFF]))


def test_reorder_buffer_orders_drops_duplicates_and_gives_up_on_loss():
    buf = ReorderBuffer(depth=2)
    out = [p.seq for s in (10, 12, 11, 11, 13) for p in buf.push(pk(s))]
    assert out == [10, 11, 12, 13]
    assert buf.duplicates == 1
    # 14 is lost: after depth+1 later packets it is skipped
    out = [p.seq for s in (15, 16, 17) for p in buf.push(pk(s))]
    assert out == [15, 16, 17] and buf.lost == 1
    assert buf.push(pk(14)) == []  # too late now


def test_reorder_buffer_wraps_sequence_numbers():
    buf = ReorderBuffer()
    out = [p.seq for s in (65534, 0, 65535, 1) for p in buf.push(pk(s))]
    assert out == [65534, 65535, 0, 1]


def test_reorder_buffer_starts_over_for_a_new_ssrc():
    """A PBX that bridges a new party natively passes on that party's stream (another SSRC,
    sequence numbers from anywhere): it is played, not dropped as "already played"."""
    buf = ReorderBuffer()
    out = [p.seq for s in (40000, 40002) for p in buf.push(pk(s))]
    assert out == [40000]  # 40001 missing: 40002 held
    other = [RtpPacket(0, s, s * 160, 2, b"x") for s in (1000, 1001)]  # lower numbers, new SSRC
    assert [p.seq for p in buf.push(other[0])] == [40002, 1000]  # the old stream's held packet first
    assert [p.seq for p in buf.push(other[1])] == [1001]
    assert buf.duplicates == 0


class Recorder:
    codec = CODECS["ulaw"]

    def __init__(self):
        self.sent: list[tuple[float, bytes]] = []

    def send(self, data: bytes) -> None:
        self.sent.append((time.monotonic(), data))


async def test_pacing_has_no_drift():
    rec = Recorder()
    sender = RtpSender(rec)  # type: ignore[arg-type]
    t0 = time.monotonic()
    played = await sender.play(np.zeros(8000 * 2, np.int16))  # 2 s = 100 frames
    elapsed = time.monotonic() - t0
    assert played == pytest.approx(2.0)
    assert len(rec.sent) == 100
    assert 1.95 <= elapsed <= 2.25  # absolute schedule: sleep jitter does not accumulate
    seqs = [parse(d).seq for _, d in rec.sent]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    ts = [parse(d).timestamp for _, d in rec.sent]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(ts, ts[1:]))


async def test_no_burst_after_a_stalled_event_loop():
    rec = Recorder()
    sender = RtpSender(rec)  # type: ignore[arg-type]

    async def stall():
        await asyncio.sleep(0.3)
        time.sleep(0.4)  # block the loop, as a slow synchronous call would

    task = asyncio.create_task(stall())
    await sender.play(np.zeros(8000 * 1, np.int16))
    await task
    times = [t for t, _ in rec.sent]
    gaps = np.diff(times)
    stall_at = int(np.argmax(gaps))
    assert gaps[stall_at] > 0.35  # the stall is visible...
    # ...but no burst follows: a backlog of ~20 frames would go out back-to-back
    resumed = times[stall_at + 1]
    soon = [t for t in times if resumed <= t < resumed + 0.05]
    assert len(soon) <= 4, f"{len(soon)} frames in the 50 ms after the stall: a burst"
    assert sender.stalls == 1
    assert parse(rec.sent[stall_at + 1][1]).marker  # new talk spurt marked


async def test_stop_event_interrupts_playback_quickly():
    rec = Recorder()
    sender = RtpSender(rec)  # type: ignore[arg-type]
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    played = await sender.play(np.zeros(8000 * 5, np.int16), stop)
    assert 0.15 <= played <= 0.3


async def test_packets_from_a_foreign_port_are_ignored_and_crafted_ones_are_cheap():
    """Real sockets on 127.0.0.1: only the peer the endpoint was given may speak into the call,
    and a flood of crafted packets (sequence jumps) costs little event-loop time."""
    import socket

    from voicebot.telephony.rtp import RtpEndpoint

    codec = CODECS["ulaw"]
    peer, stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    stranger.bind(("127.0.0.1", 0))
    frames: list[np.ndarray] = []
    endpoint = await RtpEndpoint.open("127.0.0.1", codec, frames.append, remote=peer.getsockname())
    try:
        packet = lambda seq: pack(RtpPacket(0, seq, seq * 160, 1, b"\xff" * 160))  # noqa: E731
        stranger.sendto(packet(1), endpoint.local_address)
        peer.sendto(packet(1), endpoint.local_address)
        await asyncio.sleep(0.1)
        assert endpoint.rejected == 1 and endpoint.received == 1
        # 200 crafted packets from the peer: wild sequence jumps and odd sizes
        started = time.process_time()
        for i in range(200):
            seq = (i * 7919) & 0xFFFF
            endpoint.datagram_received(pack(RtpPacket(0, seq, seq, 1, b"\x7f" * (i % 300))), peer.getsockname())
        assert time.process_time() - started < 0.02
    finally:
        endpoint.close()
        peer.close()
        stranger.close()


async def test_a_lost_packet_is_reported_before_the_frames_that_follow_it():
    """Real socket on 127.0.0.1: the loss is told in its place in the stream, so a listener can
    put silence there and keep its timeline."""
    import socket

    from voicebot.telephony.rtp import RtpEndpoint

    codec = CODECS["ulaw"]
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    heard: list[object] = []
    endpoint = await RtpEndpoint.open("127.0.0.1", codec, lambda f: heard.append(int(f[0])), remote=peer.getsockname())
    endpoint.on_loss = lambda n: heard.append(f"lost {n}")
    try:
        for seq in [1, 2, 3, 5, 6, 7, 8]:  # 4 never comes
            peer.sendto(pack(RtpPacket(0, seq, seq * 160, 1, bytes([seq]) * 160)), endpoint.local_address)
        await asyncio.sleep(0.1)
        first = [int(codec.decode(bytes([s]))[0]) for s in range(1, 9)]
        assert heard == first[:3] + ["lost 1"] + first[4:8]
        assert endpoint.reorder.lost == 1
    finally:
        endpoint.close()
        peer.close()


def test_frame_bytes_is_the_encoded_size_of_one_frame():
    for codec in CODECS.values():
        assert codec.frame_bytes == len(codec.encode(np.zeros(codec.samples_per_frame, np.int16)))
