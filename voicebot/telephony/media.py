"""The media leg of one call: a mixing bridge holding the caller's channel and an ExternalMedia
channel that streams RTP to and from our own UDP socket (DESIGN.md §2 step 2)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from voicebot.config import MediaConfig
from voicebot.errors import AriError, TelephonyError
from voicebot.telephony.ari import AriClient
from voicebot.telephony.rtp import CODECS, RtpEndpoint, RtpSender

log = logging.getLogger("voicebot.media")


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
        bridge_id = external_id = None
        try:
            bridge = await ari.request("POST", "/bridges", params={"type": "mixing", "name": f"vb-{channel_id}"})
            bridge_id = bridge["id"]
            ext = await ari.request("POST", "/channels/externalMedia", params={
                "app": ari.app, "external_host": f"{host}:{port}", "format": codec.name,
                "encapsulation": "rtp", "transport": "udp", "direction": "both",
            })
            external_id = ext["id"]
            variables = ext.get("channelvars") or {}
            addr = variables.get("UNICASTRTP_LOCAL_ADDRESS")
            rport = variables.get("UNICASTRTP_LOCAL_PORT")
            if addr and rport:
                endpoint.remote = (addr, int(rport))
            await _add_to_bridge(ari, bridge_id, f"{channel_id},{external_id}")
        except Exception:
            endpoint.close()
            await _cleanup(ari, bridge_id, external_id)
            raise
        if endpoint.remote is None:
            endpoint.close()
            await _cleanup(ari, bridge_id, external_id)
            raise TelephonyError("ExternalMedia did not report its RTP address")
        log.debug("media leg up", extra={"channel": channel_id, "rtp_local": f"{host}:{port}",
                                         "rtp_remote": f"{endpoint.remote[0]}:{endpoint.remote[1]}"})
        return cls(ari, endpoint, bridge_id, external_id)

    async def play(self, samples: np.ndarray, stop: asyncio.Event | None = None) -> float:
        return await self.sender.play(samples, stop)

    async def close(self) -> None:
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


async def _cleanup(ari: AriClient, bridge_id: str | None, external_id: str | None) -> None:
    for method, path in (("DELETE", f"/channels/{external_id}" if external_id else None),
                         ("DELETE", f"/bridges/{bridge_id}" if bridge_id else None)):
        if path:
            try:
                await ari.request(method, path)
            except TelephonyError:
                pass  # already gone (hang-up races); nothing to free
