"""Scripted SIP calls for tests, benchmarks and ``voicebot call``: a caller and a human agent.

The caller behaves like a phone: it streams RTP continuously (silence when it has nothing to
say), speaks when told (after the bot's greeting, or at a fixed time), can press keys (RFC 4733),
and measures what it hears: when the bot's audio started and stopped, relative to the answer.
``place_call`` runs either the classic ``CallScript`` behaviour or any ``drive(LiveCall)``
coroutine (``voicebot.sip.script`` runs YAML step scripts that way).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from voicebot.errors import TelephonyError
from voicebot.sip.message import SipMessage, audio_sdp, sdp_audio_address
from voicebot.sip.ua import Dialog, IncomingCall, SipUA
from voicebot.speech.audio import dbfs
from voicebot.telephony.rtp import CODECS, FRAME_MS, RtpEndpoint, RtpSender

log = logging.getLogger("voicebot.caller")

PCMU = CODECS["ulaw"]
RATE = PCMU.rate
LOUD_DBFS = -45.0  # a received frame louder than this counts as bot audio
MAX_LOSS_FILL = 5  # frames: a longer sequence gap is a resync (a new talk spurt), not filled
SIOCGSTAMPNS = 0x8907  # Linux ioctl: the kernel's receive time of the last datagram read


@dataclass
class CallScript:
    number: str
    audio: np.ndarray | None = None  # 8 kHz int16, what the caller says
    speak_at: float | None = None  # seconds after answer; None = when the greeting has ended
    dtmf: list[tuple[str, float]] = field(default_factory=list)  # (digit, seconds after answer)
    max_seconds: float = 60.0
    quiet_hangup_s: float = 4.0  # after speaking: hang up once the bot was quiet this long
    greeting_gap_s: float = 0.8  # silence that marks the end of the bot's greeting
    headers: list[tuple[str, str]] = field(default_factory=list)  # extra INVITE headers (X-Voicebot-Ref...)


@dataclass
class CallReport:
    answered: bool
    status: int
    reason: str
    hangup_by: str = ""
    duration_s: float = 0.0
    first_audio_ms: float | None = None
    bot_audio_seconds: float = 0.0
    bot_segments_ms: list[tuple[int, int]] = field(default_factory=list)
    caller_speech_ms: tuple[int, int] | None = None
    dtmf_sent_ms: list[int] = field(default_factory=list)
    timed_out: bool = False  # the call reached max_seconds (the caller then hung up)
    steps: list[dict] = field(default_factory=list)  # scripted calls: each step with its times
    recording: np.ndarray | None = None
    frame_ms: list[float] = field(default_factory=list)  # arrival time of each recorded frame (kernel's)
    lost_frames: int = 0  # RTP sequence gaps; the recording holds silence in their place

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("recording")
        d.pop("frame_ms")
        return d


class StampedEndpoint(RtpEndpoint):
    """An RTP endpoint that knows when each datagram reached this machine (the kernel's receive
    time), not when this process got round to reading it: a caller process under load reads late,
    and gaps measured on its own clock would be the caller's stutter, not the bot's."""

    arrived: float | None = None  # monotonic receive time of the datagram being handled
    _fd = -1
    _stamped = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._fd = transport.get_extra_info("socket").fileno()
        self._stamped = True
        try:  # the first request switches time-stamping on (nothing received yet: ENOENT)
            fcntl.ioctl(self._fd, SIOCGSTAMPNS, bytes(16))
        except FileNotFoundError:
            pass
        except OSError:
            self._stamped = False  # not Linux, or not a UDP socket: this process's clock

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrived = self._kernel_time()
        super().datagram_received(data, addr)

    def _kernel_time(self) -> float:
        """The last datagram's receive time on the ``time.monotonic()`` clock."""
        now = time.monotonic()
        if not self._stamped:
            return now
        try:
            sec, nsec = struct.unpack("qq", fcntl.ioctl(self._fd, SIOCGSTAMPNS, bytes(16)))
        except OSError:
            return now
        age = time.time() - (sec + nsec / 1e9)  # the stamp is wall-clock time
        return now - age if 0 <= age < 5 else now

    def arrival(self) -> float:
        """When the datagram being handled arrived (``time.monotonic()`` clock)."""
        return self.arrived if self.arrived is not None else time.monotonic()


class Listener:
    """Collects received frames with their arrival time relative to the answer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.t0: float | None = None
        self.clock = clock  # arrival time of the frame being handled (monotonic seconds)
        self.frames: list[np.ndarray] = []
        self.loud: list[tuple[float, bool]] = []  # (ms since answer, loud?)
        self.lost = 0  # frames that never arrived (RTP sequence gaps)

    def on_frame(self, samples: np.ndarray) -> None:
        if self.t0 is None:
            return  # early media before the answer: not the bot
        self.frames.append(samples)
        self.loud.append(((self.clock() - self.t0) * 1000, dbfs(samples) > LOUD_DBFS))

    def on_loss(self, frames: int) -> None:
        """Frames lost on the way: silence in their place, as a phone plays, so the recording
        keeps its timeline. A gap longer than ``MAX_LOSS_FILL`` is taken as the sender's resync
        (a jump in sequence numbers), not as that much lost audio."""
        if self.t0 is None:
            return
        self.lost += frames
        if frames <= MAX_LOSS_FILL:
            for _ in range(frames):
                self.on_frame(np.zeros(RATE * FRAME_MS // 1000, np.int16))

    def first_loud_since(self, since_ms: float) -> float | None:
        """The first loud frame at or after ``since_ms``."""
        found = None
        for t, loud in reversed(self.loud):
            if t < since_ms:
                break
            if loud:
                found = t
        return found

    def last_loud_ms(self) -> float | None:
        return next((t for t, loud in reversed(self.loud) if loud), None)

    def segments(self, gap_ms: float = 300) -> list[tuple[int, int]]:
        out: list[list[float]] = []
        for t, loud in self.loud:
            if not loud:
                continue
            if out and t - out[-1][1] <= gap_ms:
                out[-1][1] = t + FRAME_MS
            else:
                out.append([t, t + FRAME_MS])
        return [(int(a), int(b)) for a, b in out]


Drive = Callable[["LiveCall"], Awaitable[None]]


class LiveCall:
    """An answered call as seen by the caller: send speech and keys, watch the bot's audio, hang up.

    The media task streams RTP every 20 ms from the moment of the answer (silence when there is
    nothing to say), like a phone. Times are milliseconds since the answer, the same clock as
    ``Listener`` and ``CallReport``.
    """

    def __init__(self, ua: SipUA, dialog: Dialog, endpoint: RtpEndpoint, listener: Listener,
                 report: CallReport) -> None:
        self.ua, self.dialog, self.listener, self.report = ua, dialog, listener, report
        self.sender = RtpSender(endpoint)
        self.t0 = dialog.answered_at or time.monotonic()
        self.spoke_until_ms: float | None = None  # when the caller's last speech ends
        self.sent_ms: list[float] = []  # when each frame of speech was sent, in order (ms since answer)
        self._outgoing: deque[np.ndarray] = deque()
        self._silence = np.zeros(PCMU.samples_per_frame, dtype=np.int16)
        self._stop = asyncio.Event()
        self._media: asyncio.Task | None = None

    def start_media(self) -> None:
        self._media = asyncio.create_task(self.sender.stream(self._next_frame, self._stop))

    async def stop_media(self) -> None:
        self._stop.set()
        if self._media is not None:
            await self._media

    def _next_frame(self) -> np.ndarray:
        if not self._outgoing:
            return self._silence
        self.sent_ms.append(self.now_ms())
        return self._outgoing.popleft()

    @property
    def next_speech_frame(self) -> int:
        """Index in ``sent_ms`` that the next queued speech's first frame will have."""
        return len(self.sent_ms) + len(self._outgoing)

    @property
    def ended(self) -> bool:
        return self.dialog.ended.is_set()

    def now_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000

    def say_soon(self, samples: np.ndarray) -> tuple[float, float]:
        """Queue speech after anything already queued; returns its (start, end) in ms."""
        queued_ms = len(self._outgoing) * FRAME_MS
        start = self.now_ms() + queued_ms
        self._outgoing.extend(self.sender.frames(samples))
        end = start + len(samples) / RATE * 1000
        self.spoke_until_ms = end
        return start, end

    async def say(self, samples: np.ndarray) -> tuple[float, float]:
        """Speak and return once the last frame has been sent (or the call ended); returns when
        the speech was really sent (a late event loop sends late), planned times if never."""
        first = self.next_speech_frame
        start, end = self.say_soon(samples)
        last = self.next_speech_frame - 1
        while self._outgoing and not self.ended:
            await self.sleep(FRAME_MS / 1000)
        if first < len(self.sent_ms):
            start = self.sent_ms[first]
        if last < len(self.sent_ms):
            end = self.sent_ms[last] + FRAME_MS
        return start, end

    async def press(self, digits: str, gap_s: float = 0.1) -> None:
        """Send RFC 4733 key presses in order, with a pause between keys as a thumb would."""
        for i, digit in enumerate(digits):
            if self.ended:
                return
            if i:
                await self.sleep(gap_s)
            self.report.dtmf_sent_ms.append(int(self.now_ms()))
            await self.sender.send_dtmf(digit)

    async def wait_heard(self, since_ms: float, timeout_s: float) -> float | None:
        """The first bot audio at or after ``since_ms`` (ms since answer), waiting until
        ``timeout_s`` after ``since_ms``; None when nothing came (or the call ended first)."""
        while True:
            heard = self.listener.first_loud_since(since_ms)
            if heard is not None:
                return heard
            if self.ended or self.now_ms() - since_ms >= timeout_s * 1000:
                return None
            await self.sleep(0.02)

    async def wait_bot(self, since_ms: float, gap_s: float) -> bool:
        """Until the bot has spoken after ``since_ms`` and then been quiet for ``gap_s``.

        Returns False when the call ended first.
        """
        while not self.ended:
            last = self.listener.last_loud_ms()
            if last is not None and last >= since_ms and self.now_ms() - last >= gap_s * 1000:
                return True
            await self.sleep(0.02)
        return False

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the call ends (a poll of 100 ms or less just sleeps: its loop
        checks ``ended``, and a wait_for task every 20 ms per call is CPU the bot would miss)."""
        if seconds <= 0.1:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(self.dialog.ended.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def hangup(self) -> None:
        await self.ua.bye(self.dialog)


async def place_call(script: CallScript, user: str, password: str,
                     server: tuple[str, int] = ("127.0.0.1", 5060), host: str = "127.0.0.1",
                     drive: Drive | None = None) -> CallReport:
    """Call ``script.number`` and run ``drive`` on the answered call (default: ``script``'s
    speak/keys/hang-up-when-quiet behaviour), bounded by ``script.max_seconds``."""
    ua = await SipUA(user, password, server, host).start()
    listener = Listener()
    endpoint = await StampedEndpoint.open(host, PCMU, listener.on_frame)
    listener.clock = endpoint.arrival
    endpoint.on_loss = listener.on_loss
    try:
        resp, dialog = await ua.invite(script.number, audio_sdp(host, endpoint.local_address[1]),
                                       timeout=script.max_seconds, headers=script.headers)
        if not 200 <= resp.status < 300:
            return CallReport(False, resp.status, resp.start.split(" ", 2)[-1])
        listener.t0 = dialog.answered_at
        endpoint.remote = sdp_audio_address(dialog.remote_sdp)
        report = CallReport(True, resp.status, "OK")
        call = LiveCall(ua, dialog, endpoint, listener, report)
        await _run(call, drive or (lambda c: _converse(script, c)), script.max_seconds)
        return report
    finally:
        endpoint.close()
        ua.close()


async def _run(call: LiveCall, drive: Drive, max_seconds: float) -> None:
    """Run the conversation, then hang up (if the bot has not) and fill in the report."""
    report, listener = call.report, call.listener
    call.start_media()
    try:
        try:
            async with asyncio.timeout(max_seconds):
                await drive(call)
        except TimeoutError:
            report.timed_out = True
    finally:  # also when ``drive`` failed: never leave the far end holding an open call
        await call.stop_media()
        if not call.ended:
            await call.hangup()
    report.hangup_by = "caller" if call.dialog.ended_by == "local" else "bot"
    report.duration_s = round(time.monotonic() - call.t0, 3)
    report.bot_segments_ms = listener.segments()
    report.bot_audio_seconds = round(sum(loud for _, loud in listener.loud) * FRAME_MS / 1000, 2)
    first = next((t for t, loud in listener.loud if loud), None)
    report.first_audio_ms = round(first, 1) if first is not None else None
    report.recording = np.concatenate(listener.frames) if listener.frames else np.zeros(0, np.int16)
    report.frame_ms = [t for t, _ in listener.loud]
    report.lost_frames = listener.lost


async def _converse(script: CallScript, call: LiveCall) -> None:
    """The classic test call: say ``audio`` on cue, press the timed keys, hang up when quiet."""
    keys = asyncio.create_task(_press_keys(script, call))
    try:
        spoke_until = None
        if script.audio is not None:
            await _wait_turn(script, call)
            if not call.ended:
                start, spoke_until = call.say_soon(script.audio)
                call.report.caller_speech_ms = (int(start), int(spoke_until))
        await _wait_end(script, call, spoke_until)
    finally:
        keys.cancel()


async def _wait_turn(script: CallScript, call: LiveCall) -> None:
    """Wait until it is the caller's turn to speak."""
    if script.speak_at is not None:
        delay = script.speak_at - call.now_ms() / 1000
        if delay > 0:
            await call.sleep(delay)
        return
    while not call.ended:  # after the greeting: heard audio, then a gap of silence
        last = call.listener.last_loud_ms()
        if last is not None and call.now_ms() - last >= script.greeting_gap_s * 1000:
            return
        await call.sleep(0.05)


async def _wait_end(script: CallScript, call: LiveCall, spoke_until: float | None) -> None:
    """Until the bot hangs up, or (after we spoke) the bot has been quiet for a while."""
    while not call.ended:
        if spoke_until is not None and call.now_ms() > spoke_until:
            last = max(call.listener.last_loud_ms() or 0, spoke_until)
            if call.now_ms() - last >= script.quiet_hangup_s * 1000:
                return
        await call.sleep(0.05)


async def _press_keys(script: CallScript, call: LiveCall) -> None:
    for digit, at in sorted(script.dtmf, key=lambda d: d[1]):
        delay = at - call.now_ms() / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        call.report.dtmf_sent_ms.append(int(call.now_ms()))
        await call.sender.send_dtmf(digit)


class AgentPhone:
    """A registered SIP agent that answers every call, and says ``audio`` (8 kHz) when it does.

    Used by tests to prove that a transfer to the human queue really reaches a person's phone.
    """

    def __init__(self, user: str, password: str, audio: np.ndarray | None = None,
                 server: tuple[str, int] = ("127.0.0.1", 5060), host: str = "127.0.0.1") -> None:
        self.ua = SipUA(user, password, server, host)
        self.audio = audio
        self.host = host
        self.answered: list[str] = []  # call-ids
        self.invites: list[SipMessage] = []  # what each call's INVITE said (caller id, headers)
        self.rung_at: list[float] = []  # time.monotonic() of each INVITE
        self.heard: list[np.ndarray] = []
        self._endpoints: list[RtpEndpoint] = []

    async def start(self) -> AgentPhone:
        await self.ua.start()
        self.ua.on_invite = self._on_invite
        await self.ua.register()
        return self

    async def _on_invite(self, incoming: IncomingCall) -> None:
        self.rung_at.append(time.monotonic())
        self.invites.append(incoming.request)
        endpoint = await RtpEndpoint.open(self.host, PCMU, self.heard.append,
                                          remote=sdp_audio_address(incoming.remote_sdp))
        self._endpoints.append(endpoint)
        try:
            await incoming.answer(audio_sdp(self.host, endpoint.local_address[1]))
        except TelephonyError:
            return
        self.answered.append(incoming.dialog.call_id)
        if self.audio is not None:
            await RtpSender(endpoint).play(self.audio)

    async def close(self) -> None:
        try:
            await self.ua.register(expires=0)
        except TelephonyError:
            pass
        for e in self._endpoints:
            e.close()
        self.ua.close()
