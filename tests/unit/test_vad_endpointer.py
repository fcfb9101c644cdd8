"""Endpointing on scripted VAD decisions (exact timing) and on real webrtcvad with synthetic audio."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from voicebot.speech.audio import resample
from voicebot.speech.endpointer import Endpointer, NoInput, SpeechHeld, SpeechStarted, UtteranceEnded
from voicebot.speech.vad import VadConfig, WebrtcVad

RATE = 16000
FRAME = RATE // 50


class ScriptedVad:
    """Says 'speech' for frames whose first sample is non-zero."""

    def is_speech(self, frame: np.ndarray) -> bool:
        return bool(frame[0] != 0)


def frames(pattern: str, rate: int = RATE) -> list[np.ndarray]:
    """'S' = voiced 20 ms frame, '.' = silent frame; voiced frames carry their index."""
    n = rate // 50
    out = []
    for i, ch in enumerate(pattern):
        f = np.zeros(n, dtype=np.int16)
        if ch == "S":
            f[:] = i + 1
        out.append(f)
    return out


def run(ep: Endpointer, fs: list[np.ndarray]) -> list[tuple[int, object]]:
    return [(i, e) for i, f in enumerate(fs) for e in ep.push(f)]


def scripted(**kw) -> Endpointer:
    return Endpointer(VadConfig(**kw), RATE, vad=ScriptedVad())


def test_start_needs_n_voiced_frames_in_window():
    ep = scripted(start_frames=4, start_window=6)
    events = run(ep, frames("S.S." + "." * 10 + "SSS.S"))
    starts = [(i, e) for i, e in events if isinstance(e, SpeechStarted)]
    assert [i for i, _ in starts] == [18]  # the isolated clicks did not start speech


def test_pre_roll_keeps_audio_before_onset():
    ep = scripted(pre_roll_ms=100, start_frames=3, start_window=3)
    fs = frames("." * 20 + "SSS")
    (_, started), = [(i, e) for i, e in run(ep, fs) if isinstance(e, SpeechStarted)]
    assert len(started.samples) == (5 + 3) * FRAME  # 100 ms pre-roll + the 3 onset frames
    assert started.at_ms == 15 * 20


def test_end_after_trailing_silence_with_tail_trimmed():
    ep = scripted(pre_roll_ms=0, start_frames=2, start_window=2, end_silence_ms=200, tail_ms=40)
    fs = frames("SS" + "S" * 20 + "." * 9 + "." + "." * 5)
    events = run(ep, fs)
    (i, ended), = [(i, e) for i, e in events if isinstance(e, UtteranceEnded)]
    assert i == 22 + 10 - 1  # 10 silent frames = 200 ms
    assert ended.reason == "silence"
    assert len(ended.samples) == (22 + 2) * FRAME
    assert ended.speech_ms == 22 * 20


def test_short_pause_inside_utterance_does_not_end_it():
    ep = scripted(end_silence_ms=400)
    events = run(ep, frames("SSSSSS" + "." * 15 + "SSSS" + "." * 25))
    assert sum(isinstance(e, UtteranceEnded) for _, e in events) == 1
    assert sum(isinstance(e, SpeechStarted) for _, e in events) == 1


def test_max_utterance_length():
    ep = scripted(max_utterance_ms=1000, pre_roll_ms=0)
    events = run(ep, frames("S" * 120))
    ends = [e for _, e in events if isinstance(e, UtteranceEnded)]
    assert ends and ends[0].reason == "max_length"
    assert len(ends[0].samples) == 50 * FRAME


def test_speech_held_once_for_barge_in():
    ep = scripted(barge_in_ms=200, start_frames=4, start_window=6)
    events = run(ep, frames("SSSS" + "SSSSSS" + "SSSS" + "." * 50))
    held = [(i, e) for i, e in events if isinstance(e, SpeechHeld)]
    assert [i for i, _ in held] == [9]  # 10 voiced frames = 200 ms
    assert held[0][1].held_ms == 200


def test_cough_does_not_reach_barge_in():
    ep = scripted(barge_in_ms=200, end_silence_ms=300)
    events = run(ep, frames("SSSSS" + "." * 30))
    assert not any(isinstance(e, SpeechHeld) for _, e in events)
    assert [type(e).__name__ for _, e in events] == ["SpeechStarted", "SpeechDiscarded"]


def test_no_input_fires_once_and_rearms_on_reset():
    ep = scripted(no_input_ms=1000)
    events = run(ep, frames("." * 120))
    assert [(i, e.silence_ms) for i, e in events] == [(49, 1000)]
    ep.reset()
    assert [i for i, _ in run(ep, frames("." * 60))] == [49]


def test_wrong_frame_size_is_an_error():
    ep = scripted()
    with pytest.raises(ValueError, match="320 samples"):
        ep.push(np.zeros(160, dtype=np.int16))


def test_config_validation():
    with pytest.raises(ValueError, match="start_frames"):
        VadConfig(start_frames=9, start_window=6).validate()
    with pytest.raises(ValueError, match="frame_ms"):
        VadConfig(frame_ms=25).validate()


# -- real webrtcvad on synthetic audio ----------------------------------------------------------


def shaped_noise(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    """Speech-like noise: band-limited noise with a 4 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = np.convolve(rng.standard_normal(n), np.hanning(9), mode="same")  # tilt towards low freqs
    harmonic = sum(np.sin(2 * np.pi * f0 * k * t) / k for k, f0 in ((1, 140), (2, 140), (3, 140)))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return (np.clip((0.3 * x + harmonic) * env * 5000, -32768, 32767)).astype(np.int16)


def espeak_or_noise(rate: int) -> np.ndarray:
    if shutil.which("espeak-ng"):
        from voicebot.speech.tts.espeak import EspeakTTS

        s = EspeakTTS().synthesize("Jeg har mistet mit pas, og jeg skal rejse på fredag.")
        return resample(s.samples, s.rate, rate)
    return shaped_noise(2.0, rate)


def to_frames(samples: np.ndarray, rate: int) -> list[np.ndarray]:
    n = rate // 50
    return [samples[i:i + n] for i in range(0, len(samples) - n + 1, n)]


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("source", ["espeak", "noise"])
def test_webrtcvad_endpointing_on_synthetic_speech(rate, source):
    speech = espeak_or_noise(rate) if source == "espeak" else shaped_noise(2.0, rate)
    rng = np.random.default_rng(0)
    quiet = lambda s: (rng.standard_normal(int(s * rate)) * 30).astype(np.int16)  # noqa: E731
    audio = np.concatenate([quiet(1.0), speech, quiet(1.5), speech, quiet(1.5)])
    cfg = VadConfig(end_silence_ms=700, no_input_ms=5000)
    ep = Endpointer(cfg, rate, vad=WebrtcVad(rate, cfg.aggressiveness))
    events = [e for f in to_frames(audio, rate) for e in ep.push(f)]
    ends = [e for e in events if isinstance(e, UtteranceEnded)]
    assert len(ends) == 2, events
    speech_s = len(speech) / rate
    for e in ends:
        dur = len(e.samples) / rate
        # the whole utterance, plus pre-roll and tail, minus nothing
        assert speech_s - 0.1 <= dur <= speech_s + 0.8, (dur, speech_s)
    assert sum(isinstance(e, SpeechHeld) for e in events) == 2
    assert not any(isinstance(e, NoInput) for e in events)


def test_webrtcvad_stays_quiet_on_silence():
    rate = 8000
    ep = Endpointer(VadConfig(no_input_ms=2000), rate, vad=WebrtcVad(rate, 2))
    events = [e for f in to_frames(np.zeros(rate * 3, dtype=np.int16), rate) for e in ep.push(f)]
    assert [type(e) for e in events] == [NoInput]
