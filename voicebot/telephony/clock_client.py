"""The bot's side of the media clock (media_clock.py): starts the process, hands it each call's
RTP socket and prompts, and learns when a prompt has been sent.

If the clock cannot start or dies, ``play`` raises ``ClockUnavailable`` and the media leg paces
that prompt on the event loop itself (worse timing under load, but the caller still hears it);
the next prompt starts a new clock.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import itertools
import logging
import socket
import sys
import time
import weakref

from voicebot.telephony.media_clock import FRAME_S, MAX_MESSAGE, Wire
from voicebot.telephony.rtp import RtpEndpoint

log = logging.getLogger("voicebot.rtp")

START_WAIT_S = 5.0
STOP_WAIT_S = 1.0  # a stopped prompt reports back within a frame; past this the clock is stuck
ROOM_WAIT_S = 2.0  # the clock reads as fast as we write; no room in its socket for this long: stuck


class ClockUnavailable(Exception):
    pass


class MediaClock:
    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._send_lock = asyncio.Lock()
        self._starting: asyncio.Future | None = None
        self._legs: dict[int, RtpEndpoint] = {}      # legs the running clock knows
        self._leg_ids: dict[int, int] = {}           # id(endpoint) -> leg id
        self._pending: dict[tuple[int, int], asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._late: collections.deque[tuple[float, float]] = collections.deque(maxlen=10_000)
        self._room: asyncio.Future | None = None      # a send waiting for room in the socket
        self._later: set[asyncio.Task] = set()        # cleanup messages that had to wait for room

    @property
    def running(self) -> bool:
        return self._sock is not None

    async def start(self) -> None:
        """Start the clock now (at serve start: the first caller's greeting must not wait for a
        process to start). Failing here is logged; prompts then start it, or fall back."""
        try:
            await self._ensure_started()
        except ClockUnavailable as exc:
            log.error("media clock unavailable; prompts are paced on the event loop", extra={"error": str(exc)})

    async def play(self, endpoint: RtpEndpoint, payload: bytes, stop: asyncio.Event | None) -> float:
        """Send ``payload`` (whole 20 ms frames of ``endpoint.codec``) through ``endpoint``'s
        socket; return the seconds sent (fewer when ``stop`` was set or this was cancelled)."""
        await self._ensure_started()
        leg_id = await self._leg(endpoint)
        play_id = next(self._ids)
        done = asyncio.get_running_loop().create_future()
        self._pending[(leg_id, play_id)] = done
        frame_bytes = endpoint.codec.frame_bytes
        step = max(frame_bytes, MAX_MESSAGE // frame_bytes * frame_bytes)
        stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            chunks = range(0, len(payload), step) or [0]
            for start in chunks:
                last = start + step >= len(payload)
                await self._send(Wire.PLAY.pack(b"P", leg_id, play_id, last) + payload[start:start + step])
            # the clock reports the end; if that report never comes (a stuck clock) give up a
            # little after the prompt's own length rather than hold the call forever
            length_s = len(payload) // frame_bytes * FRAME_S
            await asyncio.wait([f for f in (done, stopped) if f is not None], timeout=length_s + STOP_WAIT_S,
                               return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                await self._send(Wire.STOP.pack(b"S", leg_id, play_id))
                await asyncio.wait_for(asyncio.shield(done), STOP_WAIT_S)
            return done.result() * FRAME_S
        except asyncio.TimeoutError:
            self._on_readable()  # the answer may be waiting: our own loop was late, not the clock
            if done.done() and not done.exception():
                return done.result() * FRAME_S
            await self._died("the media clock did not answer a stop")
            raise ClockUnavailable("the media clock is stuck") from None
        except BaseException:
            if not done.done():  # cancelled (hang-up): stop sending, without waiting for it
                self._send_soon(Wire.STOP.pack(b"S", leg_id, play_id))
            raise
        finally:
            self._pending.pop((leg_id, play_id), None)
            if stopped is not None:
                stopped.cancel()

    def late_ms_max(self, window_s: float = 60.0) -> float:
        """The worst frame's delay past its due time in the last ``window_s`` (for /healthz: over
        ~20 ms the caller hears a gap)."""
        since = time.monotonic() - window_s
        return round(max((late for at, late in self._late if at >= since), default=0.0), 1)

    def forget(self, endpoint: RtpEndpoint) -> None:
        """The call's socket is closing: the clock closes its copy (and sends nothing more)."""
        leg_id = self._leg_ids.pop(id(endpoint), None)
        if leg_id is not None and self._legs.pop(leg_id, None) is not None:
            self._send_soon(Wire.CLOSE.pack(b"C", leg_id))

    async def close(self) -> None:
        proc = self._proc
        await self._died(None)
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 2)  # EOF on its socket ends it
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()

    # -- the process

    async def _ensure_started(self) -> None:
        if self._sock is not None:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self._starting)
        finally:
            if self._starting is not None and self._starting.done():
                self._starting = None

    async def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voicebot.telephony.media_clock", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise ClockUnavailable(f"cannot start the media clock: {exc}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        try:  # wait until it is ready (imports done), so a prompt never waits for its start
            ready = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(ours, 16), START_WAIT_S)
        except (asyncio.TimeoutError, OSError):
            ready = b""
        if ready != b"R":
            ours.close()
            self._proc.kill()
            raise ClockUnavailable("the media clock did not start")
        self._sock = ours
        self._legs.clear()
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_readable)
        log.info("media clock started", extra={"pid": self._proc.pid})

    async def _leg(self, endpoint: RtpEndpoint) -> int:
        leg_id = self._leg_ids.get(id(endpoint))
        if leg_id is None:
            leg_id = self._leg_ids[id(endpoint)] = next(self._ids)
        if leg_id not in self._legs:
            transport, remote = endpoint.transport, endpoint.remote
            if transport is None or remote is None:
                raise ClockUnavailable("the call's RTP socket is closed")
            codec = endpoint.codec
            message = Wire.OPEN.pack(b"O", leg_id, codec.payload_type, codec.samples_per_frame,
                                     codec.frame_bytes) + f"{remote[0]}:{remote[1]}".encode()
            sock = transport.get_extra_info("socket")
            if transport.is_closing() or sock is None or sock.fileno() < 0:
                raise ClockUnavailable("the call's RTP socket is closed")
            await self._send(message, sock.fileno())
            self._legs[leg_id] = endpoint
        return leg_id

    async def _send(self, message: bytes, fd: int | None = None) -> None:
        """Send one message (with ``fd`` attached), in order. A full socket (a burst of calls
        handing over long prompts while the clock was not scheduled) is waited out, not fatal."""
        async with self._send_lock:
            sock = self._sock
            if sock is None:
                raise ClockUnavailable("the media clock is not running")
            deadline = asyncio.get_running_loop().time() + ROOM_WAIT_S
            while True:
                try:
                    if fd is None:
                        sock.send(message)
                    else:
                        socket.send_fds(sock, [message], [fd])
                    return
                except BlockingIOError:
                    if await self._wait_for_room(sock, deadline):
                        continue
                    if self._sock is sock:  # not already replaced while we waited
                        await self._died(f"the media clock took no messages for {ROOM_WAIT_S:.0f} s")
                    raise ClockUnavailable("the media clock is stuck") from None
                except OSError as exc:
                    if fd is not None and exc.errno == errno.EBADF:
                        raise ClockUnavailable("the call's RTP socket is closed") from None
                    if self._sock is sock:
                        await self._died(f"the media clock's socket failed: {exc}")
                    raise ClockUnavailable(str(exc)) from None

    async def _wait_for_room(self, sock: socket.socket, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        room = self._room = loop.create_future()
        fileno = sock.fileno()
        loop.add_writer(fileno, lambda: room.done() or room.set_result(True))
        try:
            return await asyncio.wait_for(room, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            return False
        finally:
            self._room = None
            if self._sock is sock:  # else _died removed it (and the number may be reused already)
                loop.remove_writer(fileno)

    def _send_soon(self, message: bytes) -> None:
        """Cleanup paths (a stop, a closed call) cannot wait: send now if there is room, else
        queue it behind the messages already waiting (best effort: a lost one would leave the
        clock sending into a finished call, or holding its socket)."""
        if self._sock is None:
            return
        if not self._send_lock.locked():
            try:
                self._sock.send(message)
                return
            except BlockingIOError:
                pass
            except OSError:
                return  # the reader sees the clock's end
        task = asyncio.ensure_future(self._send_quietly(message))
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _send_quietly(self, message: bytes) -> None:
        try:
            await self._send(message)
        except ClockUnavailable:
            pass

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                asyncio.ensure_future(self._died("the media clock exited"))
                return
            if data[:1] == b"D" and len(data) >= Wire.DONE.size:
                _, leg_id, play_id, frames, late_us = Wire.DONE.unpack_from(data)
                self._late.append((time.monotonic(), late_us / 1000))
                future = self._pending.get((leg_id, play_id))
                if future is not None and not future.done():
                    future.set_result(frames)

    async def _died(self, why: str | None) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if why:
            log.error("media clock lost; prompts are paced on the event loop until it restarts",
                      extra={"error": why})
        loop = asyncio.get_running_loop()
        loop.remove_reader(sock.fileno())
        loop.remove_writer(sock.fileno())
        if self._room is not None and not self._room.done():
            self._room.set_result(False)
        sock.close()
        self._legs.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClockUnavailable(why or "the media clock stopped"))
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None and why:
            proc.kill()


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaClock] = weakref.WeakKeyDictionary()


def media_clock() -> MediaClock:
    """The running event loop's clock (`serve` starts its process; otherwise the first prompt does)."""
    loop = asyncio.get_running_loop()
    if loop not in _clocks:
        _clocks[loop] = MediaClock()
    return _clocks[loop]
