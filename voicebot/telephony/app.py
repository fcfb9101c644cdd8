"""The ARI application: one reader of the event stream, one task per call.

Calls are found by channel id; events for channels we don't own are ignored, and so is the
StasisStart of our own ``UnicastRTP/*`` ExternalMedia channels. On shutdown every live call is
handed back to the dialplan (fail-open) instead of being dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voicebot.config import MediaConfig
from voicebot.errors import TelephonyError
from voicebot.telephony.ari import AriClient
from voicebot.telephony.call import HUMAN_TARGET, Call, VoiceServices

log = logging.getLogger("voicebot.app")

Conversation = Callable[[Call], Awaitable[None]]


class VoicebotApp:
    def __init__(self, ari: AriClient, media_config: MediaConfig, conversation: Conversation,
                 voice: VoiceServices) -> None:
        self.ari = ari
        self.voice = voice
        self.media_config = media_config
        self.conversation = conversation
        self.calls: dict[str, Call] = {}
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        async for event in self.ari.events():
            try:
                self.dispatch(event)
            except Exception:  # a malformed event must not stop the reader
                log.exception("could not dispatch ARI event", extra={"type": event.get("type")})

    def dispatch(self, event: dict[str, Any]) -> None:
        channel = event.get("channel") or {}
        cid = channel.get("id")
        if event.get("type") == "StasisStart":
            if channel.get("name", "").startswith("UnicastRTP/") or cid in self.calls:
                return
            self._start_call(Call(self.ari, channel, event.get("args") or [], self.media_config, self.voice))
        elif cid in self.calls:
            self.calls[cid].deliver(event)

    def _start_call(self, call: Call) -> None:
        self.calls[call.id] = call
        task = asyncio.create_task(call.run(self.conversation), name=f"call-{call.id}")
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            self.calls.pop(call.id, None)

        task.add_done_callback(done)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Hand every live call back to the dialplan, let the calls end, then stop stragglers.

        Waiting before cancelling matters: a call that ends by itself deletes its ExternalMedia
        channel and bridge; a call cancelled mid-cleanup would leave them behind in Asterisk.
        """
        live = [c for c in self.calls.values() if not c.gone.is_set()]
        if live:
            log.info("shutting down: handing calls back to the dialplan", extra={"calls": len(live)})
        await asyncio.gather(*(c.hand_back(HUMAN_TARGET, outcome="shutdown") for c in live),
                             return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        await self._until_app_is_empty()

    async def _until_app_is_empty(self, timeout: float = 2.0) -> None:
        """Wait (briefly) until Asterisk has let go of every channel and bridge of ours. Asterisk
        removes an app whose websocket closes only if nothing is subscribed to it at that moment;
        otherwise `ari show apps` keeps listing it, as if the bot were still there."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                app = await self.ari.request("GET", f"/applications/{self.ari.app}")
            except TelephonyError:
                return
            if not (app or {}).get("channel_ids") and not (app or {}).get("bridge_ids"):
                return
            await asyncio.sleep(0.05)
