"""VoicebotApp.reconcile (one function, with a recording stand-in for ARI): after a (re)connect
the bot's calls and Asterisk's channels agree again. The real thing runs in
tests/integration/test_no_caller_stranded.py (SIGKILL + restart, Asterisk restart mid-call)."""

from __future__ import annotations

import asyncio

from voicebot.config import MediaConfig
from voicebot.errors import AriError
from voicebot.telephony.app import VoicebotApp
from voicebot.telephony.call import Call, VoiceServices
from voicebot.telephony.ear import VoiceConfig


class Ari:
    app = "voicebot"

    def __init__(self, channels: dict[str, dict], app_channels: list[str], app_bridges: list[str]) -> None:
        self.channels, self.app_channels, self.app_bridges = channels, app_channels, app_bridges
        self.requests: list[tuple[str, str, dict]] = []

    async def request(self, method, path, *, params=None, body=None):
        self.requests.append((method, path, params or {}))
        if path == "/applications/voicebot":
            return {"channel_ids": self.app_channels, "bridge_ids": self.app_bridges}
        if method == "GET" and path.startswith("/channels/"):
            cid = path.split("/")[2]
            if cid not in self.channels:
                raise AriError(method, path, 404, '{"message":"Channel not found"}')
            return self.channels[cid]
        return None


def _voice() -> VoiceServices:
    return VoiceServices(speech=None, new_listener=lambda script=None: None, config=VoiceConfig())


async def test_reconcile_ends_lost_calls_hands_back_orphans_and_deletes_dead_media_legs():
    ari = Ari(channels={"live": {"id": "live", "name": "PJSIP/softphone-1"},
                        "orphan": {"id": "orphan", "name": "PJSIP/softphone-2"},
                        "orphan-media": {"id": "orphan-media", "name": "UnicastRTP/127.0.0.1:4000-1"}},
              app_channels=["live", "orphan", "orphan-media"], app_bridges=["orphan-bridge", "live-bridge"])
    app = VoicebotApp(ari, MediaConfig(), conversation=None, voice=_voice())
    for cid in ("live", "lost"):
        app.calls[cid] = Call(ari, {"id": cid}, ["kff"], MediaConfig(), app.voice)

    await app.reconcile(settle_s=0)
    await asyncio.gather(*app._tasks)

    assert app.calls["lost"].gone.is_set()  # Asterisk no longer has it: the call ends
    assert not app.calls["live"].gone.is_set()
    sent = [(m, p, q.get("variable")) for m, p, q in ari.requests if m != "GET"]
    assert ("POST", "/channels/orphan/variable", "VOICEBOT_TARGET") in sent
    assert ("POST", "/channels/orphan/continue", None) in sent  # back to the dialplan: the human route
    assert ("DELETE", "/channels/orphan-media", None) in sent and ("DELETE", "/bridges/orphan-bridge", None) in sent
    assert not any(p.startswith(("/channels/live", "/bridges/live")) for _, p, _ in sent)  # ours: untouched


async def test_over_the_call_limit_a_call_is_handed_back_without_being_answered():
    ari = Ari(channels={}, app_channels=[], app_bridges=[])
    app = VoicebotApp(ari, MediaConfig(), conversation=None, voice=VoiceServices(
        speech=None, new_listener=lambda script=None: None, config=VoiceConfig(max_calls=1)))
    app.calls["busy"] = Call(ari, {"id": "busy"}, ["kff"], MediaConfig(), app.voice)
    app.dispatch({"type": "StasisStart", "channel": {"id": "extra", "name": "PJSIP/softphone-3"}, "args": ["kff"]})
    await asyncio.gather(*app._tasks)
    paths = [(m, p) for m, p, _ in ari.requests]
    assert ("POST", "/channels/extra/continue") in paths
    assert ("POST", "/channels/extra/answer") not in paths and "extra" not in app.calls
