"""What the caller heard: prompt stop detection and speech onset (pure functions)."""

import numpy as np

from voicebot.sip.caller import CallReport
from voicebot.sip.measure import prompt_stop_ms, voice_onset_ms

RATE = 8000


def tone(seconds: float, hz: float, level: float = 8000) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * hz * t) * level).astype(np.int16)


def report(audio: np.ndarray, start_ms: float = 0.0, gap_after: int | None = None, gap_ms: float = 0) -> CallReport:
    frames = len(audio) // 160
    times = [start_ms + 20 * i + (gap_ms if gap_after is not None and i > gap_after else 0) for i in range(frames)]
    return CallReport(True, 200, "OK", recording=audio[: frames * 160], frame_ms=times)


def prompt() -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.standard_normal(RATE * 4) * 3000).astype(np.int16)  # 4 s of loud noise: unambiguous


def test_prompt_played_out_is_none():
    p = prompt()
    assert prompt_stop_ms(report(np.concatenate([np.zeros(400, np.int16), p])), p) is None


def test_stop_then_other_audio_is_found_at_the_stop():
    p = prompt()
    heard = np.concatenate([p[: RATE * 2], tone(2, 440)])  # interrupted at 2.0 s, a reply follows
    stop = prompt_stop_ms(report(heard), p)
    assert stop is not None and abs(stop - 2000) <= 20


def test_stop_before_an_rtp_pause_uses_the_last_matching_frame():
    p = prompt()
    heard = np.concatenate([p[: RATE * 1], tone(1, 440)])
    # RTP paused 3 s after the stop (frame 49 is the last prompt frame)
    stop = prompt_stop_ms(report(heard, gap_after=49, gap_ms=3000), p)
    assert stop is not None and abs(stop - 1000) <= 20


def test_voice_onset():
    clip = np.concatenate([np.zeros(RATE // 2, np.int16), tone(1, 300)])
    assert voice_onset_ms(clip, RATE) == 500


def test_recording_that_ends_mid_prompt_means_it_stopped():
    p = prompt()
    stop = prompt_stop_ms(report(p[: RATE * 2]), p)
    assert stop is not None and abs(stop - 2000) <= 20


def test_a_frame_lost_or_added_on_the_way_is_not_a_stop():
    """A PBX that drops or adds a frame shifts the rest of the prompt; the caller still hears it go on."""
    p = prompt()
    k = RATE * 2  # at 2.0 s
    dropped = np.concatenate([p[:k], p[k + 160:]])
    added = np.concatenate([p[:k], np.zeros(160, np.int16), p[k:]])
    twice = np.concatenate([p[:k], p[k + 320:]])  # two frames at once
    for heard in (dropped, added, twice):
        assert prompt_stop_ms(report(heard), p) is None


def test_a_stop_after_a_lost_frame_is_still_found_where_it_happened():
    p = prompt()
    heard = np.concatenate([p[:RATE], p[RATE + 160: RATE * 3], tone(2, 440)])  # lost at 1 s, stopped at 3 s
    stop = prompt_stop_ms(report(heard), p)
    assert stop is not None and abs(stop - (3000 - 20)) <= 20, stop


def test_the_caller_fills_a_lost_frame_with_silence_and_counts_it():
    from voicebot.sip.caller import Listener

    listener = Listener(clock=lambda: 1.0)
    listener.t0 = 0.0
    listener.on_frame(np.full(160, 5000, np.int16))
    listener.on_loss(2)
    listener.on_frame(np.full(160, 5000, np.int16))
    assert listener.lost == 2 and len(listener.frames) == 4 and len(listener.loud) == 4
    assert [bool(np.any(f)) for f in listener.frames] == [True, False, False, True]
    listener.on_loss(10_000)  # a sequence jump (the sender resynced), not a loss to play out
    assert listener.lost == 10_002 and len(listener.frames) == 4
