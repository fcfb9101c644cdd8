"""Call.run: whatever goes wrong inside a conversation, the caller is handed to a human.

A unit test of one function with a recording stand-in for the ARI transport; the real-Asterisk
tests prove the dialplan side (tests/integration/test_pbx_calls.py).
"""

from __future__ import annotations

from voicebot.config import MediaConfig
from voicebot.errors import EngineError
from voicebot.telephony.call import Call, VoiceServices
from voicebot.telephony.ear import VoiceConfig


class RecordingAri:
    app = "voicebot"

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []

    async def request(self, method, path, *, params=None, body=None):
        self.requests.append((method, path, params or {}))
        if path == "/bridges":
            return {"id": params["bridgeId"]}
        if path == "/channels/externalMedia":
            return {"id": params["channelId"], "channelvars": {"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1",
                                                "UNICASTRTP_LOCAL_PORT": "9"}}
        return None


class Listener:
    def push(self, frame):
        return []

    def reset(self):
        pass

    def expect(self, choices):
        pass


def make_call(ari) -> Call:
    voice = VoiceServices(speech=None, new_listener=lambda script=None: Listener(), config=VoiceConfig())
    return Call(ari, {"id": "c1", "caller": {"number": "12345678"}}, ["kff"], MediaConfig(), voice)


async def run_failing(exc: Exception) -> RecordingAri:
    ari = RecordingAri()

    async def conversation(call):
        raise exc

    await make_call(ari).run(conversation)
    return ari


async def test_engine_failure_hands_the_caller_to_the_human_queue():
    ari = await run_failing(EngineError("whisper crashed"))
    calls = [(m, p) for m, p, _ in ari.requests]
    variable = next(params for m, p, params in ari.requests
                    if p == "/channels/c1/variable" and m == "POST")
    assert variable == {"variable": "VOICEBOT_TARGET", "value": "human-queue"}
    assert ("POST", "/channels/c1/continue") in calls
    assert ("DELETE", "/channels/c1") not in calls  # never dropped
    # and the media leg is cleaned up
    assert ("DELETE", "/channels/c1-media") in calls and ("DELETE", "/bridges/c1-bridge") in calls


async def test_a_bug_is_treated_the_same_way():
    ari = await run_failing(ZeroDivisionError())
    assert ("POST", "/channels/c1/continue") in [(m, p) for m, p, _ in ari.requests]


async def test_normal_end_hangs_up():
    ari = RecordingAri()

    async def conversation(call):
        return None  # the conversation ended without handing over

    await make_call(ari).run(conversation)
    calls = [(m, p) for m, p, _ in ari.requests]
    assert ("DELETE", "/channels/c1") in calls and ("POST", "/channels/c1/continue") not in calls


class FlakyAri(RecordingAri):
    """Fails the first request to each path it is told to, like a hiccup on the ARI link."""

    def __init__(self, failing: set[str]) -> None:
        super().__init__()
        self.failing = set(failing)

    async def request(self, method, path, *, params=None, body=None):
        if method == "POST" and path in self.failing:
            self.failing.discard(path)
            self.requests.append((method, path, params or {}))
            from voicebot.errors import AriError
            raise AriError(method, path, 500, "injected")
        return await super().request(method, path, params=params, body=body)


async def test_hand_back_retries_both_requests_and_continues_even_without_the_variable():
    ari = FlakyAri({"/channels/c1/variable", "/channels/c1/continue"})
    call = make_call(ari)
    assert await call.hand_back("human-queue")
    posts = [p for m, p, _ in ari.requests if m == "POST"]
    assert posts.count("/channels/c1/variable") == 2 and posts.count("/channels/c1/continue") == 2


async def test_a_failing_ear_hands_the_caller_over_instead_of_leaving_silence():
    ari = RecordingAri()

    class BrokenListener(Listener):
        def push(self, frame):
            raise ValueError("bad frame")

    voice = VoiceServices(speech=None, new_listener=lambda script=None: BrokenListener(), config=VoiceConfig())
    call = Call(ari, {"id": "c1"}, ["kff"], MediaConfig(), voice)

    async def conversation(call):
        import numpy as np
        call.audio_in.put_nowait(np.zeros(160, dtype=np.int16))
        await call.gone.wait()  # waits forever unless the task group stops it

    import asyncio
    await asyncio.wait_for(call.run(conversation), 1.0)
    assert ("POST", "/channels/c1/continue") in [(m, p) for m, p, _ in ari.requests]
