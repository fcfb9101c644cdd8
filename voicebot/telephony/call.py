"""One call in the bot: the caller's channel, its media leg, and the I/O primitives a
conversation uses (say, hang up, hand back to the dialplan).

Events for this channel arrive through ``deliver()`` from the app's single ARI reader, so a slow
call never stalls another. The conversation itself is a coroutine given to ``run()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.config import MediaConfig
from voicebot.dialogue.events import Event
from voicebot.errors import TelephonyError, VoicebotError
from voicebot.telephony.ari import AriClient
from voicebot.telephony.ear import Ear, VoiceConfig
from voicebot.telephony.media import MediaLeg

log = logging.getLogger("voicebot.call")

HUMAN_TARGET = "human-queue"  # dialplan context of the human route (dialplans/30-human-queue.conf)


class CallerGone(Exception):
    """The caller hung up; the conversation stops."""


@dataclass
class VoiceServices:
    """What every call shares: speech out at the media rate, a listener factory, turn-taking."""

    speech: Any  # voicebot.speech.tts.SpeechOut: audio_for(text, recording) / prompt(name)
    new_listener: Callable[[], Any]  # -> voicebot.speech.asr.Listener (VAD + ASR) for one call
    config: VoiceConfig


@dataclass(frozen=True)
class Played:
    seconds: float
    interrupted: bool  # barge-in: the dialogue knows the caller did not hear it all


class Call:
    def __init__(self, ari: AriClient, channel: dict[str, Any], tenant: str, media_config: MediaConfig,
                 voice: VoiceServices) -> None:
        self.ari = ari
        self.voice = voice
        self.ear: Ear | None = None
        self.id: str = channel["id"]
        self.caller: str = (channel.get("caller") or {}).get("number", "")
        self.tenant = tenant
        self.media_config = media_config
        self.media: MediaLeg | None = None
        self.gone = asyncio.Event()
        self.audio_in: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=500)
        self.started = time.monotonic()
        self.outcome = "abandoned"
        self._done = False  # we ended it (hang-up or hand-back): no fail-open needed

    # ---- events from the app's ARI reader ---------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            self.gone.set()
        elif kind == "ChannelDtmfReceived" and self.ear is not None:
            self.ear.on_digit(event.get("digit", ""))

    def _on_frame(self, samples: np.ndarray) -> None:
        if self.audio_in.full():  # nobody is listening right now: keep the newest audio
            self.audio_in.get_nowait()
        self.audio_in.put_nowait(samples)

    # ---- lifecycle ----------------------------------------------------------------------------
    async def run(self, conversation: Callable[[Call], Awaitable[None]]) -> None:
        """Answer, open media, run ``conversation``; on any failure hand the caller to a human."""
        extra = {"channel": self.id, "tenant": self.tenant, "caller": self.caller}
        log.info("call started", extra=extra)
        try:
            await self.ari.request("POST", f"/channels/{self.id}/answer")
            self.media = await MediaLeg.open(self.ari, self.id, self.media_config, self._on_frame)
            self.ear = Ear(self.voice.new_listener(), self.voice.config, self.id)
            ear_task = asyncio.create_task(self.ear.run(self.audio_in), name=f"ear-{self.id}")
            try:
                await conversation(self)
            finally:
                ear_task.cancel()
            if not self._done and not self.gone.is_set():
                await self.hangup("resolved")
        except CallerGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call failed; handing the caller to a human", extra=extra)
            if not self.gone.is_set() and not self._done:
                await self.hand_back(HUMAN_TARGET, outcome="failed")
        finally:
            if self.media is not None:
                # shielded: even a cancelled call frees its bridge and ExternalMedia channel
                await asyncio.shield(self.media.close())
            log.info("call ended", extra={**extra, "outcome": self.outcome,
                                          "seconds": round(time.monotonic() - self.started, 1)})

    # ---- primitives for conversations ---------------------------------------------------------
    def check(self) -> None:
        if self.gone.is_set():
            raise CallerGone()

    async def say(self, text: str, recording: Path | None = None) -> Played:
        """Say ``text`` (or play its recording); caller speech or a key press interrupts."""
        audio = await self.voice.speech.audio_for(text, recording)
        return await self.play_prompt(audio)

    async def say_prompt(self, name: str) -> Played:
        """Say the fixed prompt ``name`` from config (its recording when one is configured)."""
        return await self.play_prompt(await self.voice.speech.prompt(name))

    async def play_prompt(self, audio: np.ndarray) -> Played:
        assert self.ear is not None
        stop = self.ear.prompt_started()
        interrupted = False
        try:
            seconds = await self.play(audio, stop)
            interrupted = stop.is_set()
        finally:
            self.ear.prompt_ended(interrupted)
        if interrupted:
            log.info("prompt interrupted", extra={"channel": self.id, "played_s": round(seconds, 2),
                                                  "of_s": round(len(audio) / self.media.rate, 2)})
        return Played(seconds, interrupted)

    async def next_event(self, timeout: float | None = None) -> Event:
        """The caller's next utterance, key press or silence. Raises CallerGone on hang-up."""
        assert self.ear is not None
        getter = asyncio.ensure_future(self.ear.events.get())
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            done, _ = await asyncio.wait({getter, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (getter, gone):
                f.cancel()
        if getter in done:
            event = getter.result()
            if isinstance(event, VoicebotError):  # the engine failed: the conversation hands over
                raise event
            return event
        if gone in done:
            raise CallerGone()
        raise asyncio.TimeoutError()

    async def play(self, samples: np.ndarray, stop: asyncio.Event | None = None) -> float:
        """Play audio at the media rate; returns seconds played. Stops when the caller hangs up."""
        self.check()
        assert self.media is not None
        stop = stop or asyncio.Event()
        watcher = asyncio.create_task(_set_when(self.gone, stop))
        try:
            return await self.media.play(samples, stop)
        finally:
            watcher.cancel()
            self.check()

    async def hangup(self, outcome: str = "resolved") -> None:
        self.outcome, self._done = outcome, True
        try:
            await self.ari.request("DELETE", f"/channels/{self.id}")
        except TelephonyError:
            pass  # already gone

    async def hand_back(self, target: str, outcome: str = "transferred") -> None:
        """Leave Stasis with ``VOICEBOT_TARGET`` set: the dialplan routes the call (fail-open)."""
        self.outcome, self._done = outcome, True
        try:
            await self.ari.request("POST", f"/channels/{self.id}/variable",
                                   params={"variable": "VOICEBOT_TARGET", "value": target})
            await self.ari.request("POST", f"/channels/{self.id}/continue")
            log.info("call handed back to the dialplan", extra={"channel": self.id, "target": target})
        except TelephonyError as exc:
            log.warning("could not hand the call back", extra={"channel": self.id, "error": str(exc)})


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
