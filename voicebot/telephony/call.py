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
from typing import Any

import numpy as np

from voicebot.config import MediaConfig
from voicebot.errors import TelephonyError
from voicebot.telephony.ari import AriClient
from voicebot.telephony.media import MediaLeg

log = logging.getLogger("voicebot.call")

HUMAN_TARGET = "human-queue"  # dialplan context of the human route (dialplans/30-human-queue.conf)


class CallerGone(Exception):
    """The caller hung up; the conversation stops."""


class Call:
    def __init__(self, ari: AriClient, channel: dict[str, Any], tenant: str, media_config: MediaConfig) -> None:
        self.ari = ari
        self.id: str = channel["id"]
        self.caller: str = (channel.get("caller") or {}).get("number", "")
        self.tenant = tenant
        self.media_config = media_config
        self.media: MediaLeg | None = None
        self.gone = asyncio.Event()
        self.dtmf: asyncio.Queue[str] = asyncio.Queue()
        self.audio_in: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=500)
        self.started = time.monotonic()
        self.outcome = "abandoned"
        self._done = False  # we ended it (hang-up or hand-back): no fail-open needed

    # ---- events from the app's ARI reader ---------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
            self.gone.set()
        elif kind == "ChannelDtmfReceived":
            self.dtmf.put_nowait(event.get("digit", ""))

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
            await conversation(self)
            if not self._done and not self.gone.is_set():
                await self.hangup("resolved")
        except CallerGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("call failed; handing the caller to a human", extra=extra)
            if not self.gone.is_set():
                await self.hand_back(HUMAN_TARGET, outcome="failed")
        finally:
            if self.media is not None:
                await self.media.close()
            log.info("call ended", extra={**extra, "outcome": self.outcome,
                                          "seconds": round(time.monotonic() - self.started, 1)})

    # ---- primitives for conversations ---------------------------------------------------------
    def check(self) -> None:
        if self.gone.is_set():
            raise CallerGone()

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
