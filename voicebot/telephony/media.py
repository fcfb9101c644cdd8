"""The media leg of one call: a mixing bridge holding the caller's channel and an ExternalMedia
channel that streams RTP to and from our own UDP socket (DESIGN.md §2 step 2).

Their ids are derived from the caller's channel id (``media_ids``), chosen by us before they are
created: a set-up cancelled while a request is in flight can still delete what it created, and
the app can tell a leftover (its call is gone) from a leg still being set up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from voicebot.config import MediaConfig
from voicebot.errors import AriError, TelephonyError
from voicebot.telephony.ari import AriClient
from voicebot.telephony.clock_client import ClockUnavailable, media_clock
from voicebot.telephony.rtp import CODECS, RtpEndpoint, RtpSender

log = logging.getLogger("voicebot.media")

BRIDGE_SUFFIX, MEDIA_SUFFIX = "-bridge", "-media"


def media_ids(channel_id: str) -> tuple[str, str]:
    """The (bridge id, ExternalMedia channel id) of the call on ``channel_id``."""
    return channel_id + BRIDGE_SUFFIX, channel_id + MEDIA_SUFFIX


def owner_of(resource_id: str) -> str | None:
    """The caller's channel id a bridge or ExternalMedia id of ours belongs to (None: not ours)."""
    for suffix in (BRIDGE_SUFFIX, MEDIA_SUFFIX):
        if resource_id.endswith(suffix):
            return resource_id[:-len(suffix)]
    return None


class MediaLeg:
    def __init__(self, ari: AriClient, endpoint: RtpEndpoint, bridge_id: str, external_id: str) -> None:
        self.ari = ari
        self.endpoint = endpoint
        self.sender = RtpSender(endpoint)
        self.bridge_id = bridge_id
        self.external_id = external_id

    @property
    def rate(self) -> int:
        return self.endpoint.codec.rate

    @classmethod
    async def open(cls, ari: AriClient, channel_id: str, config: MediaConfig,
                   on_frame: Callable[[np.ndarray], None]) -> MediaLeg:
        codec = CODECS[config.format]
        endpoint = await RtpEndpoint.open(config.bind_host, codec, on_frame)
        host, port = endpoint.local_address
        bridge_id, external_id = media_ids(channel_id)
        try:
            await ari.request("POST", "/bridges", params={"type": "mixing", "bridgeId": bridge_id,
                                                          "name": f"vb-{channel_id}"})
            ext = await ari.request("POST", "/channels/externalMedia", params={
                "app": ari.app, "channelId": external_id, "external_host": f"{host}:{port}",
                "format": codec.name, "encapsulation": "rtp", "transport": "udp", "direction": "both",
            })
            variables = ext.get("channelvars") or {}
            addr = variables.get("UNICASTRTP_LOCAL_ADDRESS")
            rport = variables.get("UNICASTRTP_LOCAL_PORT")
            if not (addr and rport):
                raise TelephonyError("ExternalMedia did not report its RTP address")
            endpoint.remote = (addr, int(rport))
            await _add_to_bridge(ari, bridge_id, f"{channel_id},{external_id}")
        except BaseException:
            # also on cancellation (shutdown, a hang-up racing the set-up): free the socket, the
            # ExternalMedia channel and the bridge, or Asterisk keeps them forever
            endpoint.close()
            await asyncio.shield(_cleanup(ari, bridge_id, external_id))
            raise
        log.debug("media leg up", extra={"channel": channel_id, "rtp_local": f"{host}:{port}",
                                         "rtp_remote": f"{endpoint.remote[0]}:{endpoint.remote[1]}"})
        return cls(ari, endpoint, bridge_id, external_id)

    async def play(self, samples: np.ndarray, stop: asyncio.Event | None = None) -> float:
        """Send ``samples`` on the media clock (media_clock.py: its own process, so nothing the bot
        does delays the caller's audio); returns the seconds sent, fewer when ``stop`` was set
        (barge-in). If the clock is unavailable, this prompt is paced on the event loop."""
        frames = self.sender.frames(samples)
        if not frames:
            return 0.0
        try:
            return await media_clock().play(self.endpoint, self.endpoint.codec.encode(np.concatenate(frames)), stop)
        except ClockUnavailable as exc:
            log.warning("prompt paced on the event loop", extra={"error": str(exc)})
            return await self.sender.play(samples, stop)

    async def close(self) -> None:
        media_clock().forget(self.endpoint)  # before the socket closes: the clock drops its copy
        self.endpoint.close()
        await _cleanup(self.ari, self.bridge_id, self.external_id)


async def _add_to_bridge(ari: AriClient, bridge_id: str, channels: str, attempts: int = 50) -> None:
    """The ExternalMedia channel enters Stasis a moment after it is created; until then ARI
    answers 422 "Channel not in Stasis application". Retry briefly rather than fail the call."""
    for attempt in range(attempts):
        try:
            await ari.request("POST", f"/bridges/{bridge_id}/addChannel", params={"channel": channels})
            return
        except AriError as exc:
            if exc.status != 422 or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01)


async def _cleanup(ari: AriClient, bridge_id: str, external_id: str) -> None:
    for path in (f"/channels/{external_id}", f"/bridges/{bridge_id}"):
        try:
            await ari.request("DELETE", path)
        except TelephonyError:
            pass  # never created, or already gone (hang-up races): nothing to free
