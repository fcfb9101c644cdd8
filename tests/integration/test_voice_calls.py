"""The voice path on real calls: real Danish speech recognized through a phone line, and
barge-in by speech and by keypad, measured at the caller."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.integration.telephony import call
from voicebot.sip.measure import prompt_stop_ms, voice_onset_ms
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.sip.caller import RATE, CallScript
from voicebot.speech.audio import read_wav, resample
from voicebot.speech.tts import create_speech_out
from voicebot.speech.wer import wer

pytestmark = pytest.mark.integration

NST = PROJECT_ROOT.parent / "shared" / "testdata" / "nst-da"


@pytest.fixture(scope="module")
def nst() -> Path:
    if not (NST / "set.yaml").exists():
        pytest.skip(f"real Danish speech not found at {NST} (CI copies ../shared beside the clone)")
    return NST


@pytest.fixture(scope="module")
def greeting():
    speech = create_speech_out(load_settings(), RATE)
    return asyncio.run(speech.prompt("greeting"))


def clip(path: Path):
    samples, rate = read_wav(path)
    return resample(samples, rate, RATE)


def transcript(nst: Path, name: str) -> str:
    import yaml

    return next(e["text"] for e in yaml.safe_load((nst / "set.yaml").read_text()) if e["audio"] == name)


def heard_lines(log: str) -> list[str]:
    return re.findall(r"'heard' .*? text=('[^']*'|\S+)", log)


def test_real_danish_clip_is_recognized_and_echoed(bot, nst):
    report = call(CallScript("33663366", audio=clip(nst / "nst-da-01.wav"), max_seconds=40))
    assert report.answered and report.caller_speech_ms is not None
    heard = heard_lines(bot.log())
    assert heard, "the bot logged no recognized text"
    text = heard[-1].strip("'")
    assert wer(transcript(nst, "nst-da-01.wav"), text) <= 0.6, text
    # the bot answered ("Jeg hørte: ...") after the caller finished speaking
    assert any(start > report.caller_speech_ms[1] for start, _ in report.bot_segments_ms)


def test_barge_in_by_speech_stops_the_prompt_within_300_ms(bot, nst, greeting):
    audio = clip(nst / "nst-da-02.wav")
    report = call(CallScript("33663366", audio=audio, speak_at=2.0, max_seconds=25))
    speech_start = report.caller_speech_ms[0] + voice_onset_ms(audio, RATE)
    stopped = prompt_stop_ms(report, greeting)
    assert stopped is not None, "the greeting played to the end despite the caller speaking"
    assert stopped - speech_start <= 300, (stopped, speech_start)
    assert "'prompt interrupted'" in bot.log()


def test_keypad_digit_stops_the_prompt(bot, greeting):
    report = call(CallScript("33663366", dtmf=[("5", 2.0)], max_seconds=10))
    stopped = prompt_stop_ms(report, greeting)
    assert stopped is not None, "the greeting played to the end despite the key press"
    # RFC 4733: Asterisk reports the digit when its end packet arrives (~160 ms after the press)
    assert 0 <= stopped - report.dtmf_sent_ms[0] <= 500, (stopped, report.dtmf_sent_ms)
    assert "by=dtmf" in bot.log()
