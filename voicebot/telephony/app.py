"""The ARI application: one reader of the event stream, one task per call.

Calls are found by channel id; events for channels we don't own are ignored, and so is the
StasisStart of our own ``UnicastRTP/*`` ExternalMedia channels. No caller is stranded:

* on shutdown every live call is handed back to the dialplan (fail-open);
* above ``voice.max_calls`` a new call goes straight back to the dialplan's human route;
* every live call's dead-man timer (``TIMEOUT(absolute)``, set by the dialplan before Stasis) is
  pushed forward while the bot is alive; a killed or hung bot stops pushing, the timer fires and
  the dialplan's ``T`` extension takes the caller to the human route;
* on every ARI (re)connect the bot reconciles: channels in its app that no call owns (left by a
  killed bot) are handed back, their ExternalMedia channels and bridges deleted, and calls whose
  channel Asterisk no longer has (hung up while the socket was down, Asterisk restarted) end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voicebot.config import MediaConfig
from voicebot.errors import AriError, TelephonyError
from voicebot.telephony.ari import CONNECTED, AriClient
from voicebot.telephony.call import HUMAN_TARGET, Call, VoiceServices
from voicebot.telephony.media import owner_of

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
        self._leaving: set[str] = set()  # channels being handed back without a call (overflow, orphans)
        self.reconciled = asyncio.Event()  # set after each reconcile (tests, /healthz)

    async def run(self) -> None:
        keepalive = asyncio.create_task(self._keep_alive(), name="deadman-keepalive")
        try:
            async for event in self.ari.events():
                try:
                    self.dispatch(event)
                except Exception:  # a malformed event must not stop the reader
                    log.exception("could not dispatch ARI event", extra={"type": event.get("type")})
        finally:
            keepalive.cancel()

    def dispatch(self, event: dict[str, Any]) -> None:
        channel = event.get("channel") or {}
        cid = channel.get("id")
        kind = event.get("type")
        if kind == CONNECTED:
            self._spawn(self.reconcile(), "reconcile")
        elif kind == "StasisStart":
            if channel.get("name", "").startswith("UnicastRTP/") or cid in self.calls or cid in self._leaving:
                return
            call = Call(self.ari, channel, event.get("args") or [], self.media_config, self.voice)
            if len(self.calls) >= self.voice.config.max_calls:
                log.warning("call limit reached: the call goes to the human route",
                            extra={"channel": cid, "calls": len(self.calls)})
                self._hand_back_unowned(call, "overload")
                return
            self._start_call(call)
        elif cid in self.calls:
            self.calls[cid].deliver(event)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hand_back_unowned(self, call: Call, route: str) -> None:
        """Send a channel we will not talk to back to the dialplan's human route."""
        self._leaving.add(call.id)

        async def leave() -> None:
            try:
                await call.hand_back(HUMAN_TARGET, outcome=route, variables={"VOICEBOT_ROUTE": route})
            finally:
                self._leaving.discard(call.id)

        self._spawn(leave(), f"leave-{call.id}")

    # ---- the dead-man timer ----------------------------------------------------------------------
    async def _keep_alive(self) -> None:
        """Push every live call's ``TIMEOUT(absolute)`` forward (and its ExternalMedia channel's,
        so a dead bot's media legs go too), one request per channel every third of the window;
        and sweep media legs whose call has ended (a set-up cut short can leave one behind)."""
        window = self.voice.config.deadman_s
        while True:
            channels = []
            for call in list(self.calls.values()):
                if call.handed_over:
                    continue
                channels.append(call.id)
                if call.media is not None:
                    channels.append(call.media.external_id)
            try:
                await asyncio.gather(*(self._push_deadline(c, window) for c in channels))
                if self.ari.connected.is_set():
                    await self._sweep_media()
            except TelephonyError:
                pass
            except Exception:  # the loop must live on: without it every call falls to the dead-man timer
                log.exception("keep-alive round failed")
            await asyncio.sleep(window / 3)

    async def _sweep_media(self) -> None:
        app = await self.ari.request("GET", f"/applications/{self.ari.app}") or {}
        for kind, ids in (("channels", app.get("channel_ids") or []), ("bridges", app.get("bridge_ids") or [])):
            for rid in ids:
                owner = owner_of(rid)
                if owner is not None and owner not in self.calls:
                    log.info("deleting a media leg whose call has ended", extra={"id": rid})
                    await self._delete(f"/{kind}/{rid}")

    async def _push_deadline(self, channel_id: str, window: float) -> None:
        try:
            await self.ari.request("POST", f"/channels/{channel_id}/variable",
                                   params={"variable": "TIMEOUT(absolute)", "value": f"{window:g}"})
        except TelephonyError:
            pass  # hung up meanwhile, or ARI away (then the timer does its job)

    # ---- reconciling with Asterisk --------------------------------------------------------------
    async def reconcile(self, settle_s: float = 0.5) -> None:
        """After a (re)connect: make the bot's calls and Asterisk's channels agree again."""
        try:
            await self._reconcile(settle_s)
        except TelephonyError as exc:
            log.warning("could not reconcile calls with Asterisk", extra={"error": str(exc)})
        finally:
            self.reconciled.set()

    async def _reconcile(self, settle_s: float) -> None:
        for call in list(self.calls.values()):  # our calls whose channel Asterisk lost meanwhile
            if not call.gone.is_set() and not await self._exists(call.id):
                log.info("call gone while ARI was away", extra={"channel": call.id})
                call.deliver({"type": "ChannelDestroyed"})
        app = await self.ari.request("GET", f"/applications/{self.ari.app}") or {}
        listed = list(app.get("channel_ids") or [])
        if not listed and not app.get("bridge_ids"):
            return
        # a StasisStart already on its way is dispatched within the settle time: not an orphan
        await asyncio.sleep(settle_s)
        for cid in listed:
            if cid in self.calls or cid in self._leaving or owner_of(cid) is not None:
                continue  # ours, or a media leg (the sweep deletes those whose call is gone)
            try:
                channel = await self.ari.request("GET", f"/channels/{cid}")
            except AriError:
                continue  # gone meanwhile
            if channel.get("name", "").startswith("UnicastRTP/"):
                await self._delete(f"/channels/{cid}")  # a media leg from before media ids were ours
            else:
                log.warning("handing back a call a previous bot left in Stasis", extra={"channel": cid})
                self._hand_back_unowned(Call(self.ari, channel, [], self.media_config, self.voice), "recovered")
        await self._sweep_media()

    async def _exists(self, channel_id: str) -> bool:
        try:
            await self.ari.request("GET", f"/channels/{channel_id}")
            return True
        except AriError as exc:
            return exc.status != 404

    async def _delete(self, path: str) -> None:
        try:
            await self.ari.request("DELETE", path)
        except TelephonyError:
            pass

    # ---- calls ------------------------------------------------------------------------------------
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
