"""One call in the bot: the caller's channel, its media leg, and the I/O primitives a
conversation uses (say, next event, hand back to the dialplan, hang up).

Events for this channel arrive through ``deliver()`` from the app's single ARI reader, so a slow
call never stalls another. The conversation is a coroutine given to ``run()``; it and the ear
(VAD + ASR) run in one task group, so when either fails the other stops and the caller hears an
apology and is handed to the human route (fail-open), never left in silence.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.config import MediaConfig
from voicebot.errors import AriError, TelephonyError
from voicebot.telephony.ari import AriClient
from voicebot.telephony.ear import DecodeGate, Ear, VoiceConfig
from voicebot.telephony.media import MediaLeg
from voicebot.telephony.speaker import Played, Speaker

log = logging.getLogger("voicebot.call")

HUMAN_TARGET = "human-queue"  # dialplan context of the human route (dialplans/30-human-queue.conf)
REF_HEADER = "X-Voicebot-Ref"  # the test caller's id for this call, stored with the record
ASR_SCRIPT_HEADER = "X-Voicebot-Asr-Script"  # the declared test recognizer's texts (tests only)


class CallerGone(Exception):
    """The caller hung up; the conversation stops."""


@dataclass
class VoiceServices:
    """What every call shares: speech out at the media rate, a listener factory, turn-taking."""

    speech: Any  # voicebot.speech.tts.SpeechOut: audio_for(text, recording)
    new_listener: Callable[..., Any]  # (asr_script: list | None) -> voicebot.speech.asr.Listener
    config: VoiceConfig
    apology: str = ""  # said when the call fails, before the hand-back to a human
    holding: str = ""  # said once per turn when recognition is slow (voice.hold_after_s)
    gate: DecodeGate | None = None  # the process-wide bound on pending decodes (voice.max_pending_decodes)
    end_silence_ms: int = 0  # the endpointer's end-of-turn wait (reported per turn)
    test_recognizer: bool = False  # asr.engine: script — read the caller's script header


class Call:
    def __init__(self, ari: AriClient, channel: dict[str, Any], args: Sequence[str], media_config: MediaConfig,
                 voice: VoiceServices) -> None:
        self.ari = ari
        self.voice = voice
        self.id: str = channel["id"]
        self.caller: str = (channel.get("caller") or {}).get("number", "")
        self.tenant = args[0] if args else ""
        # the dialplan's word on the human service's hours ("open"/"closed"): one source of truth
        hours = args[1] if len(args) > 1 else ""
        self.human_open: bool | None = {"open": True, "closed": False}.get(hours)
        self.clock = _epoch(args[2]) if len(args) > 2 else None  # the dialplan's time (tests set it)
        self.ref: str | None = None
        self.media_config = media_config
        self.media: MediaLeg | None = None
        self.ear: Ear | None = None
        self.speaker: Speaker | None = None
        self.gone = asyncio.Event()
        self.audio_in: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=500)
        self._pending_samples = np.zeros(0, dtype=np.int16)
        self.started = time.monotonic()
        self.outcome = "abandoned"
        self._done = False  # we ended it (hang-up or hand-back): no fail-open needed

    # ---- events from the app's ARI reader ---------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            self.gone.set()
            if self.speaker is not None:
                self.speaker.stop()
        elif kind == "ChannelDtmfReceived" and self.ear is not None:
            self.ear.on_digit(event.get("digit", ""))

    def _on_frame(self, samples: np.ndarray) -> None:
        """Re-cut whatever arrives into exact 20 ms frames: a packet of an odd size (a peer with
        another ptime, a truncated datagram) must not reach the VAD, which accepts only 20 ms."""
        n = self.media.endpoint.codec.samples_per_frame if self.media else len(samples)
        buffered = np.concatenate((self._pending_samples, samples)) if len(self._pending_samples) else samples
        whole = len(buffered) // n * n
        for start in range(0, whole, n):
            if self.audio_in.full():  # nobody is listening right now: keep the newest audio
                self.audio_in.get_nowait()
            self.audio_in.put_nowait(buffered[start:start + n])
        self._pending_samples = buffered[whole:]

    # ---- lifecycle ----------------------------------------------------------------------------
    async def run(self, conversation: Callable[[Call], Awaitable[None]]) -> None:
        """Answer, open media, run ``conversation``; on any failure hand the caller to a human."""
        extra = {"channel": self.id, "tenant": self.tenant}
        log.info("call started", extra=extra)
        try:
            await self.ari.request("POST", f"/channels/{self.id}/answer")
            self.ref = await self.header(REF_HEADER)
            script = await self._asr_script() if self.voice.test_recognizer else None
            self.media = await MediaLeg.open(self.ari, self.id, self.media_config, self._on_frame)
            self.speaker = Speaker(self.media.play, self.media.rate, guard_ms=self.voice.config.barge_in_guard_ms,
                                   channel_id=self.id, on_prompt_end=self._prompt_ended)
            self.ear = Ear(self.voice.new_listener(script), self.voice.config, self.speaker, self.id,
                           self.voice.end_silence_ms, self.voice.gate)
            if self.gone.is_set():  # hung up during the set-up, before there was a speaker to stop
                self.speaker.stop()
            try:
                async with asyncio.TaskGroup() as group:
                    listening = group.create_task(self.ear.run(self.audio_in), name=f"ear-{self.id}")
                    group.create_task(self._converse(conversation, listening), name=f"talk-{self.id}")
            except* CallerGone:
                pass
            if not self._done and not self.gone.is_set():
                await self.hangup("ended")  # the conversation returned without ending the call
        except CallerGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the call's task boundary: fail open, never strand
            if await self._caller_left():  # hung up during the set-up: nothing failed
                log.info("caller left during the set-up", extra={**extra, "error": _describe(exc)})
                return
            log.error("call failed; handing the caller to a human", extra={**extra, "error": _describe(exc)},
                      exc_info=not isinstance(exc, ExceptionGroup))
            await self._fail_open()
        finally:
            if self.media is not None:
                # shielded: even a cancelled call frees its bridge and ExternalMedia channel
                await asyncio.shield(self.media.close())
            log.info("call ended", extra={**extra, "outcome": self.outcome,
                                          "seconds": round(time.monotonic() - self.started, 1)})

    async def _converse(self, conversation: Callable[[Call], Awaitable[None]], listening: asyncio.Task) -> None:
        try:
            await conversation(self)
        finally:
            listening.cancel()

    async def _caller_left(self) -> bool:
        """Whether the caller is gone, also when ARI's event saying so has not arrived yet (a
        request on the channel failed because of the hang-up: the error comes first)."""
        if not self.gone.is_set():
            try:
                await self.ari.request("GET", f"/channels/{self.id}")
            except AriError as exc:
                if exc.status == 404:
                    self.gone.set()
            except TelephonyError:
                pass  # ARI unreachable: the caller may well be there; fail open
        return self.gone.is_set()

    def _prompt_ended(self, interrupted: bool) -> None:
        if self.ear is not None:
            self.ear.prompt_ended(interrupted)

    async def _fail_open(self) -> None:
        if self.gone.is_set() or self._done:
            return
        if self.speaker is not None and self.voice.apology:
            try:
                async with asyncio.timeout(8):
                    await self.speaker.play(await self.voice.speech.audio_for(self.voice.apology))
            except Exception as exc:  # noqa: BLE001 - the apology is a courtesy; the hand-back is not
                log.warning("could not say the apology", extra={"channel": self.id, "error": _describe(exc)})
        await self.hand_back(HUMAN_TARGET, outcome="failed")

    @property
    def handed_over(self) -> bool:
        """The bot has let go of the call (hand-back or hang-up sent) or the caller is gone."""
        return self._done or self.gone.is_set()

    # ---- primitives for conversations ---------------------------------------------------------
    def check(self) -> None:
        if self.gone.is_set():
            raise CallerGone()

    async def say(self, text: str, recording: Path | None = None) -> Played:
        """Say ``text`` (or play its recording); caller speech or a key press interrupts."""
        self.check()
        played = await self.play(await self.voice.speech.audio_for(text, recording))
        self.check()
        return played

    async def play(self, audio: np.ndarray) -> Played:
        """Play ``audio``; caller speech or a key press interrupts. After a hang-up it returns
        (interrupted) and the caller decides when to raise ``CallerGone`` (``check``)."""
        self.check()
        assert self.speaker is not None
        return await self.speaker.play(audio)

    async def next_event(self, timeout: float | None = None) -> tuple[object, dict[str, int]]:
        """The caller's next (event, timings): utterance, key press or silence. Raises CallerGone on
        hang-up, the engine's error when recognition failed, TimeoutError after ``timeout``.
        While a decode is slower than ``voice.hold_after_s`` the caller hears the holding line
        once (the ear itself gives up at ``voice.decode_timeout_s``)."""
        assert self.ear is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        held = False
        getter = asyncio.ensure_future(self.ear.events.get())
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            while True:
                wait = None if deadline is None else max(0.0, deadline - loop.time())
                hold_at = self._hold_at() if not held else None
                waiters, busy = {getter, gone}, None
                if hold_at is not None:
                    wait = min(wait, hold_at) if wait is not None else hold_at
                elif not held and self.voice.holding:  # wake up when a decode starts
                    busy = asyncio.ensure_future(self.ear.busy.wait())
                    waiters.add(busy)
                try:
                    done, _ = await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if busy is not None:
                        busy.cancel()
                if getter in done or gone in done:
                    break
                if busy is not None and busy in done:
                    continue  # a decode started: wait for it, or for the holding line's moment
                if hold_at is not None and self._hold_at() == 0:
                    held = True
                    log.info("recognition is slow: holding line", extra={"channel": self.id})
                    await self.say(self.voice.holding)
                elif deadline is not None and loop.time() >= deadline:
                    raise TimeoutError()
        finally:
            for f in (getter, gone):
                f.cancel()
        if getter in done:
            event, timings = getter.result()
            if isinstance(event, Exception):  # the engine failed: the conversation hands over
                raise event
            return event, timings
        raise CallerGone()

    def _hold_at(self) -> float | None:
        """Seconds until the holding line is due (0: now), None when no decode is pending."""
        since = self.ear.decoding_since if self.ear is not None else None
        if since is None or not self.voice.holding:
            return None
        return max(0.0, since + self.voice.config.hold_after_s - time.monotonic())

    async def set_variables(self, **variables: str) -> None:
        """Best effort: channel variables for ops (``core show channel``) and the dialplan."""
        for name, value in variables.items():
            try:
                await self.ari.request("POST", f"/channels/{self.id}/variable",
                                       params={"variable": name, "value": value})
            except TelephonyError as exc:
                log.debug("could not set a channel variable", extra={"channel": self.id, "variable": name,
                                                                     "error": _describe(exc)})

    async def header(self, name: str) -> str | None:
        """A SIP header of the caller's INVITE (None when absent or not a SIP channel)."""
        try:
            reply = await self.ari.request("GET", f"/channels/{self.id}/variable",
                                           params={"variable": f"PJSIP_HEADER(read,{name})"})
        except TelephonyError:
            return None
        value = (reply or {}).get("value") if isinstance(reply, dict) else None
        return value or None

    async def _asr_script(self) -> list[str | None] | None:
        from voicebot.speech.asr.script import decode_script

        raw = await self.header(ASR_SCRIPT_HEADER)
        try:
            return decode_script(raw) if raw else None
        except ValueError as exc:
            log.warning("ignoring a malformed test-recognizer script", extra={"channel": self.id, "error": str(exc)})
            return None

    async def hangup(self, outcome: str = "resolved") -> None:
        self.outcome, self._done = outcome, True
        try:
            await self.ari.request("DELETE", f"/channels/{self.id}")
        except TelephonyError:
            pass  # already gone

    async def hand_back(self, target: str, outcome: str = "transferred", variables: dict[str, str] | None = None,
                        attempts: int = 3) -> bool:
        """Leave Stasis with ``VOICEBOT_TARGET`` (and ``variables``) set: the dialplan routes the
        call (fail-open). Each request is retried; a variable that cannot be set does not stop
        the ``continue`` — the dialplan sends a call without a target to the human route."""
        self.outcome, self._done = outcome, True
        for name, value in {"VOICEBOT_TARGET": target, **(variables or {})}.items():
            await self._retry(attempts, "POST", f"/channels/{self.id}/variable",
                              params={"variable": name, "value": value})
        if await self._retry(attempts, "POST", f"/channels/{self.id}/continue"):
            log.info("call handed back to the dialplan", extra={"channel": self.id, "target": target})
            return True
        log.warning("could not hand the call back", extra={"channel": self.id, "target": target})
        return False

    async def _retry(self, attempts: int, method: str, path: str, **kwargs: Any) -> bool:
        for attempt in range(attempts):
            try:
                await self.ari.request(method, path, **kwargs)
                return True
            except AriError as exc:
                if exc.status == 404 or self.gone.is_set():  # the channel is gone: nothing to retry
                    return False
                error = exc
            except TelephonyError as exc:
                error = exc
            log.warning("ARI request failed, retrying", extra={"channel": self.id, "path": path,
                                                               "attempt": attempt + 1, "error": _describe(error)})
            await asyncio.sleep(0.05 * (2 ** attempt))
        return False


def _epoch(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromtimestamp(int(text), datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def _describe(exc: BaseException) -> str:
    """An error for the log: the type and message, never a repr that could carry headers."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"
