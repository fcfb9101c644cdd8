"""The media clock (telephony/pacer.py) over real UDP sockets on 127.0.0.1."""

import asyncio
import socket
import time

import numpy as np
import pytest

from voicebot.telephony.pacer import Pacer
from voicebot.telephony.rtp import CODECS, RtpEndpoint, RtpSender, parse

ULAW = CODECS["ulaw"]
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 does not name it


class Receiver:
    """A plain socket, read after the fact: the kernel stamps each datagram's arrival."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def drain(self) -> list[tuple[float, bytes]]:
        out = []
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return out
            stamp = next((np.frombuffer(d, np.int64) for lvl, t, d in anc if t == SO_TIMESTAMPNS), None)
            out.append((float(stamp[0]) + float(stamp[1]) / 1e9 if stamp is not None else time.time(), data))


async def endpoint_to(receiver: Receiver) -> RtpEndpoint:
    return await RtpEndpoint.open("127.0.0.1", ULAW, lambda f: None, remote=receiver.address)


def payloads(seconds: float) -> list[bytes]:
    return [bytes(160)] * int(seconds / 0.02)


async def test_a_blocked_event_loop_does_not_reach_the_caller():
    rx = Receiver()
    ep = await endpoint_to(rx)
    sender = RtpSender(ep)
    pacer = Pacer()
    playback = pacer.play(sender, ep.thread_sender(), payloads(1.0))
    await asyncio.sleep(0.2)
    time.sleep(0.4)  # the loop is blocked, as by a slow synchronous call: the clock goes on
    assert await playback.done == pytest.approx(1.0)
    got = rx.drain()
    ep.close()
    assert len(got) == 50
    gaps = np.diff([t for t, _ in got]) * 1000
    assert gaps.max() < 40, f"a gap of {gaps.max():.0f} ms while the loop was blocked"
    packets = [parse(d) for _, d in got]
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(packets, packets[1:]))
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in zip(packets, packets[1:]))
    assert packets[0].marker and not any(p.marker for p in packets[1:])


async def test_playbacks_keep_their_own_schedule_without_drift():
    rx1, rx2 = Receiver(), Receiver()
    ep1, ep2 = await endpoint_to(rx1), await endpoint_to(rx2)
    pacer = Pacer()
    t0 = time.monotonic()
    first = pacer.play(RtpSender(ep1), ep1.thread_sender(), payloads(2.0))
    await asyncio.sleep(0.013)
    second = pacer.play(RtpSender(ep2), ep2.thread_sender(), payloads(1.0))
    assert await second.done == pytest.approx(1.0)
    assert await first.done == pytest.approx(2.0)
    assert 1.95 <= time.monotonic() - t0 <= 2.2  # absolute schedule: no accumulated sleep jitter
    for rx in (rx1, rx2):
        times = [t for t, _ in rx.drain()]
        assert np.diff(times).max() < 0.04
    ep1.close()
    ep2.close()


async def test_stop_ends_a_playback_within_a_frame_and_reports_what_was_sent():
    rx = Receiver()
    ep = await endpoint_to(rx)
    playback = Pacer().play(RtpSender(ep), ep.thread_sender(), payloads(5.0))
    await asyncio.sleep(0.3)
    playback.stop()
    seconds = await asyncio.wait_for(playback.done, 0.1)
    assert 0.25 <= seconds <= 0.4
    await asyncio.sleep(0.1)
    assert len(rx.drain()) == round(seconds / 0.02)
    ep.close()


async def test_no_burst_after_the_pacer_itself_stalls():
    """A stall of the sending thread (here: a clock jump) re-bases the schedule with a marker."""
    rx = Receiver()
    ep = await endpoint_to(rx)
    offset = [0.0]
    pacer = Pacer(clock=lambda: time.monotonic() + offset[0])
    playback = pacer.play(RtpSender(ep), ep.thread_sender(), payloads(0.6))
    await asyncio.sleep(0.2)
    offset[0] = 0.5  # the thread finds itself half a second late
    assert await playback.done == pytest.approx(0.6)
    times_packets = rx.drain()
    stamps = np.array([t for t, _ in times_packets])
    assert np.diff(stamps).max() < 0.04  # nothing was sent in a rush to catch up...
    assert stamps[-1] - stamps[0] > 0.5  # ...the rest kept the 20 ms pace
    assert playback.stalls == 1
    assert sum(parse(d).marker for _, d in times_packets) == 2
    ep.close()


async def test_a_closed_socket_loses_frames_but_not_the_clock():
    rx = Receiver()
    ep = await endpoint_to(rx)
    pacer = Pacer()
    send = ep.thread_sender()
    broken = pacer.play(RtpSender(ep), send, payloads(0.2))
    ep.close()  # the socket is gone under the playback
    assert await asyncio.wait_for(broken.done, 1) == pytest.approx(0.2)
    ep2 = await endpoint_to(rx)
    assert await pacer.play(RtpSender(ep2), ep2.thread_sender(), payloads(0.1)).done == pytest.approx(0.1)
    ep2.close()
