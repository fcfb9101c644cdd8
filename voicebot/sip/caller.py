"""Scripted SIP calls for tests, benchmarks and ``voicebot call``: a caller and a human agent.

The caller behaves like a phone: it streams RTP continuously (silence when it has nothing to
say), speaks when told (after the bot's greeting, or at a fixed time), can press keys (RFC 4733),
and measures what it hears: when the bot's audio started and stopped, relative to the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from voicebot.errors import TelephonyError
from voicebot.sip.message import audio_sdp, sdp_audio_address
from voicebot.sip.ua import IncomingCall, SipUA
from voicebot.speech.audio import dbfs
from voicebot.telephony.rtp import CODECS, FRAME_MS, RtpEndpoint, RtpSender

log = logging.getLogger("voicebot.caller")

PCMU = CODECS["ulaw"]
RATE = PCMU.rate
LOUD_DBFS = -45.0  # a received frame louder than this counts as bot audio


@dataclass
class CallScript:
    number: str
    audio: np.ndarray | None = None  # 8 kHz int16, what the caller says
    speak_at: float | None = None  # seconds after answer; None = when the greeting has ended
    dtmf: list[tuple[str, float]] = field(default_factory=list)  # (digit, seconds after answer)
    max_seconds: float = 60.0
    quiet_hangup_s: float = 4.0  # after speaking: hang up once the bot was quiet this long
    greeting_gap_s: float = 0.8  # silence that marks the end of the bot's greeting


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
    recording: np.ndarray | None = None
    frame_ms: list[float] = field(default_factory=list)  # arrival time of each recorded frame

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("recording")
        d.pop("frame_ms")
        return d


class Listener:
    """Collects received frames with their arrival time relative to the answer."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.frames: list[np.ndarray] = []
        self.loud: list[tuple[float, bool]] = []  # (ms since answer, loud?)

    def on_frame(self, samples: np.ndarray) -> None:
        if self.t0 is None:
            return  # early media before the answer: not the bot
        self.frames.append(samples)
        self.loud.append(((time.monotonic() - self.t0) * 1000, dbfs(samples) > LOUD_DBFS))

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


async def place_call(script: CallScript, user: str, password: str,
                     server: tuple[str, int] = ("127.0.0.1", 5060), host: str = "127.0.0.1") -> CallReport:
    ua = await SipUA(user, password, server, host).start()
    listener = Listener()
    endpoint = await RtpEndpoint.open(host, PCMU, listener.on_frame)
    try:
        resp, dialog = await ua.invite(script.number, audio_sdp(host, endpoint.local_address[1]),
                                       timeout=script.max_seconds)
        if not 200 <= resp.status < 300:
            return CallReport(False, resp.status, resp.start.split(" ", 2)[-1])
        listener.t0 = dialog.answered_at
        endpoint.remote = sdp_audio_address(dialog.remote_sdp)
        report = CallReport(True, resp.status, "OK")
        await _converse(script, ua, dialog, endpoint, listener, report)
        return report
    finally:
        endpoint.close()
        ua.close()


async def _converse(script: CallScript, ua: SipUA, dialog, endpoint: RtpEndpoint, listener: Listener,
                    report: CallReport) -> None:
    sender = RtpSender(endpoint)
    outgoing: deque[np.ndarray] = deque()
    silence = np.zeros(PCMU.samples_per_frame, dtype=np.int16)
    stop = asyncio.Event()
    media = asyncio.create_task(sender.stream(lambda: outgoing.popleft() if outgoing else silence, stop))
    t0 = dialog.answered_at
    now_ms = lambda: (time.monotonic() - t0) * 1000
    try:
        async with asyncio.timeout(script.max_seconds):
            keys = asyncio.create_task(_press_keys(script, sender, t0, report))
            try:
                spoke_until = None
                if script.audio is not None:
                    await _wait_turn(script, dialog, listener, t0)
                    if not dialog.ended.is_set():
                        start = now_ms()
                        outgoing.extend(sender.frames(script.audio))
                        spoke_until = start + len(script.audio) / RATE * 1000
                        report.caller_speech_ms = (int(start), int(spoke_until))
                await _wait_end(script, dialog, listener, spoke_until, now_ms)
            finally:
                keys.cancel()
    except TimeoutError:
        pass
    finally:
        stop.set()
        await media
    if not dialog.ended.is_set():
        await ua.bye(dialog)
    report.hangup_by = "caller" if dialog.ended_by == "local" else "bot"
    report.duration_s = round(time.monotonic() - t0, 3)
    report.bot_segments_ms = listener.segments()
    report.bot_audio_seconds = round(sum(loud for _, loud in listener.loud) * FRAME_MS / 1000, 2)
    first = next((t for t, loud in listener.loud if loud), None)
    report.first_audio_ms = round(first, 1) if first is not None else None
    report.recording = np.concatenate(listener.frames) if listener.frames else np.zeros(0, np.int16)
    report.frame_ms = [t for t, _ in listener.loud]


async def _wait_turn(script: CallScript, dialog, listener: Listener, t0: float) -> None:
    """Wait until it is the caller's turn to speak."""
    if script.speak_at is not None:
        delay = t0 + script.speak_at - time.monotonic()
        if delay > 0:
            await _sleep_or_end(dialog, delay)
        return
    while not dialog.ended.is_set():  # after the greeting: heard audio, then a gap of silence
        last = listener.last_loud_ms()
        if last is not None and (time.monotonic() - t0) * 1000 - last >= script.greeting_gap_s * 1000:
            return
        await _sleep_or_end(dialog, 0.05)


async def _wait_end(script: CallScript, dialog, listener: Listener, spoke_until: float | None, now_ms) -> None:
    """Until the bot hangs up, or (after we spoke) the bot has been quiet for a while."""
    while not dialog.ended.is_set():
        if spoke_until is not None and now_ms() > spoke_until:
            last = max(listener.last_loud_ms() or 0, spoke_until)
            if now_ms() - last >= script.quiet_hangup_s * 1000:
                return
        await _sleep_or_end(dialog, 0.05)


async def _press_keys(script: CallScript, sender: RtpSender, t0: float, report: CallReport) -> None:
    for digit, at in sorted(script.dtmf, key=lambda d: d[1]):
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        report.dtmf_sent_ms.append(int((time.monotonic() - t0) * 1000))
        await sender.send_dtmf(digit)


async def _sleep_or_end(dialog, seconds: float) -> None:
    try:
        await asyncio.wait_for(dialog.ended.wait(), seconds)
    except asyncio.TimeoutError:
        pass


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
        self.heard: list[np.ndarray] = []
        self._endpoints: list[RtpEndpoint] = []

    async def start(self) -> AgentPhone:
        await self.ua.start()
        self.ua.on_invite = self._on_invite
        await self.ua.register()
        return self

    async def _on_invite(self, incoming: IncomingCall) -> None:
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
