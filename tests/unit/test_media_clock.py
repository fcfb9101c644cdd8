"""The media clock (telephony/media_clock.py, its own process) over real UDP sockets on 127.0.0.1."""

import asyncio
import os
import signal
import socket
import time

import numpy as np
import pytest

from voicebot.telephony.clock_client import ClockUnavailable, MediaClock
from voicebot.telephony.media_clock import Clock, Wire
from voicebot.telephony.rtp import CODECS, RtpEndpoint, parse

ULAW = CODECS["ulaw"]
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 does not name it


class Receiver:
    """The far end (Asterisk's side): a plain socket; the kernel stamps each datagram's arrival."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self.got: list[tuple[float, bytes, tuple]] = []
        try:  # read as they come (a long prompt would overflow the socket buffer otherwise)
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)
        except RuntimeError:
            pass  # no loop: read on drain()

    def _read(self) -> None:
        while True:
            try:
                data, anc, _, addr = self.sock.recvmsg(2048, 64)
            except BlockingIOError:
                return
            stamp = next((np.frombuffer(d, np.int64) for _, t, d in anc if t == SO_TIMESTAMPNS), None)
            self.got.append((float(stamp[0]) + float(stamp[1]) / 1e9 if stamp is not None else time.time(), data, addr))

    def drain(self) -> list[tuple[float, bytes, tuple]]:
        self._read()
        out, self.got = self.got, []
        return out


@pytest.fixture
async def clock():
    c = MediaClock()
    yield c
    await c.close()


async def endpoint_to(rx: Receiver) -> RtpEndpoint:
    return await RtpEndpoint.open("127.0.0.1", ULAW, lambda f: None, remote=rx.address)


def audio(seconds: float) -> bytes:
    return bytes(range(256))[:160] * int(seconds / 0.02)


async def test_a_blocked_event_loop_does_not_reach_the_caller(clock):
    rx = Receiver()
    ep = await endpoint_to(rx)
    playing = asyncio.ensure_future(clock.play(ep, audio(1.0), None))
    await asyncio.sleep(0.2)
    time.sleep(0.5)  # the bot's loop is blocked, as by a slow synchronous call: the clock goes on
    assert await playing == pytest.approx(1.0)
    got = rx.drain()
    assert len(got) == 50
    gaps = np.diff([t for t, _, _ in got]) * 1000
    assert gaps.max() < 40, f"a gap of {gaps.max():.0f} ms while the loop was blocked"
    assert {addr for _, _, addr in got} == {ep.local_address}  # sent from the call's own port
    packets = [parse(d) for _, d, _ in got]
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(packets, packets[1:]))
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160 for a, b in zip(packets, packets[1:]))
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert b"".join(p.payload for p in packets) == audio(1.0)
    ep.close()


async def test_prompts_longer_than_one_message_and_two_calls_keep_their_pace(clock):
    rx1, rx2 = Receiver(), Receiver()
    ep1, ep2 = await endpoint_to(rx1), await endpoint_to(rx2)
    t0 = time.monotonic()
    long = audio(8.0)  # 64 kB: more than one control message
    first = asyncio.ensure_future(clock.play(ep1, long, None))
    await asyncio.sleep(0.013)
    assert await clock.play(ep2, audio(1.0), None) == pytest.approx(1.0)
    assert await first == pytest.approx(8.0)
    assert 7.9 <= time.monotonic() - t0 <= 8.3  # absolute schedule: no drift
    one, two = rx1.drain(), rx2.drain()
    assert b"".join(parse(d).payload for _, d, _ in one) == long
    for got in (one, two):
        assert np.diff([t for t, _, _ in got]).max() < 0.04
    ep1.close()
    ep2.close()


async def test_stop_ends_a_prompt_within_a_frame_and_reports_what_was_sent(clock):
    rx = Receiver()
    ep = await endpoint_to(rx)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    t0 = time.monotonic()
    seconds = await clock.play(ep, audio(5.0), stop)
    # a frame after the stop on an idle machine; the slack is for a loaded one (not the 5 s prompt)
    assert time.monotonic() - t0 < 0.6
    assert 0.15 <= seconds <= 0.55  # the clock may start its first frame some ms after play()
    await asyncio.sleep(0.1)
    assert len(rx.drain()) == round(seconds / 0.02)
    ep.close()


async def test_a_cancelled_prompt_stops_sending(clock):
    rx = Receiver()
    ep = await endpoint_to(rx)
    task = asyncio.ensure_future(clock.play(ep, audio(5.0), None))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)
    sent = len(rx.drain())
    await asyncio.sleep(0.2)
    assert sent < 25 and rx.drain() == []
    ep.close()


async def test_a_killed_clock_fails_the_prompt_and_the_next_one_starts_a_new_clock(clock):
    rx = Receiver()
    ep = await endpoint_to(rx)
    task = asyncio.ensure_future(clock.play(ep, audio(3.0), None))
    await asyncio.sleep(0.2)
    os.kill(clock._proc.pid, signal.SIGKILL)
    with pytest.raises(ClockUnavailable):
        await asyncio.wait_for(task, 2)
    rx.drain()
    assert await clock.play(ep, audio(0.2), None) == pytest.approx(0.2)
    assert len(rx.drain()) == 10
    ep.close()


async def test_a_forgotten_call_gets_no_more_frames(clock):
    rx = Receiver()
    ep = await endpoint_to(rx)
    task = asyncio.ensure_future(clock.play(ep, audio(3.0), None))
    await asyncio.sleep(0.2)
    clock.forget(ep)  # the call's media leg closes
    assert await asyncio.wait_for(task, 1) < 0.5
    await asyncio.sleep(0.1)
    rx.drain()
    await asyncio.sleep(0.2)
    assert rx.drain() == []
    ep.close()


def test_after_a_stall_the_schedule_is_re_based_not_burst():
    """The schedule itself, in-process, on a clock the test moves."""
    now = [100.0]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    rx = Receiver()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    c = Clock(theirs, clock=lambda: now[0])
    c.handle(Wire.OPEN.pack(b"O", 1, 0, 160, 160) + f"{rx.address[0]}:{rx.address[1]}".encode(), [os.dup(udp.fileno())])
    c.handle(Wire.PLAY.pack(b"P", 1, 7, 1) + audio(0.2), [])
    for _ in range(3):
        c.send_due()
        now[0] += 0.021
    now[0] += 0.5  # the clock process was not scheduled for half a second
    c.send_due()
    time.sleep(0.01)
    got = rx.drain()
    assert len(got) == 4  # three on time, then one (not the 25 frames of backlog)
    assert [parse(d).marker for _, d, _ in got] == [True, False, False, True]
    while c.playing:
        now[0] += 0.021
        c.send_due()
    kind, leg, play, frames, late_us = Wire.DONE.unpack(ours.recv(64))
    assert (kind, leg, play, frames) == (b"D", 1, 7, 10)
    assert late_us >= 500_000  # the stall is reported to the bot
    udp.close()


async def test_a_stuck_clock_is_replaced_instead_of_holding_the_call(clock):
    rx = Receiver()
    ep = await endpoint_to(rx)
    assert await clock.play(ep, audio(0.1), None) == pytest.approx(0.1)
    stuck = clock._proc
    os.kill(stuck.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(ClockUnavailable):
        await clock.play(ep, audio(0.2), None)
    assert time.monotonic() - t0 < 3  # the prompt's length + the stop's wait, not forever
    await asyncio.wait_for(stuck.wait(), 2)  # killed
    rx.drain()
    assert await clock.play(ep, audio(0.2), None) == pytest.approx(0.2)
    assert clock._proc is not stuck
    ep.close()


async def test_start_runs_the_clock_before_the_first_prompt(clock):
    await clock.start()  # returns once the process said it is ready
    started = clock._proc
    assert clock.running and started.returncode is None
    rx = Receiver()
    ep = await endpoint_to(rx)
    assert await clock.play(ep, audio(0.1), None) == pytest.approx(0.1)
    assert clock._proc is started  # the prompt did not wait for a process to start
    ep.close()


async def test_a_full_control_socket_makes_the_bot_wait_not_lose_the_clock(clock):
    """A burst of calls hands over more prompt audio than the control socket holds while the
    clock is busy (here: paused): the bot waits for room; calls, stops and closes all arrive."""
    await clock.start()
    started = clock._proc
    fds_before = len(os.listdir(f"/proc/{started.pid}/fd"))
    os.kill(started.pid, signal.SIGSTOP)
    rxs = [Receiver() for _ in range(12)]
    eps = [await endpoint_to(rx) for rx in rxs]
    stop = asyncio.Event()
    plays = [asyncio.ensure_future(clock.play(ep, audio(15.0), stop)) for ep in eps]  # 120 kB each
    await asyncio.sleep(0.3)
    os.kill(started.pid, signal.SIGCONT)
    await asyncio.sleep(0.5)
    stop.set()
    sent = await asyncio.wait_for(asyncio.gather(*plays), 5)
    assert clock._proc is started and clock.running  # not declared dead
    assert all(0 < s < 2 for s in sent), sent
    for ep in eps:
        clock.forget(ep)
        ep.close()
    await asyncio.sleep(0.3)
    assert len(os.listdir(f"/proc/{started.pid}/fd")) == fds_before  # every CLOSE arrived
    assert all(rx.drain() for rx in rxs)
