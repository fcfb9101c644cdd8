"""The voice path on real calls with the real recognizer (Whisper): real Danish speech through a
phone line into the dialogue and its record, and barge-in by speech and by keypad, measured at
the caller."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.telephony import OPEN_TIME, call, greeting_audio, set_clock
from voicebot.config import PROJECT_ROOT
from voicebot.sip.caller import RATE, CallScript
from voicebot.sip.measure import prompt_stop_ms, voice_onset_ms
from voicebot.sip.script import REF_HEADER, new_ref
from voicebot.speech.audio import read_wav, resample
from voicebot.speech.wer import wer

pytestmark = pytest.mark.integration

NST = PROJECT_ROOT.parent / "shared" / "testdata" / "nst-da"


@pytest.fixture(scope="module")
def nst() -> Path:
    if not (NST / "set.yaml").exists():
        pytest.skip(f"real Danish speech not found at {NST} (CI copies ../shared beside the clone)")
    return NST


@pytest.fixture(scope="module")
def greeting(asterisk):
    set_clock(OPEN_TIME)
    return greeting_audio(OPEN_TIME)


def clip(path: Path):
    samples, rate = read_wav(path)
    return resample(samples, rate, RATE)


def transcript(nst: Path, name: str) -> str:
    import yaml

    return next(e["text"] for e in yaml.safe_load((nst / "set.yaml").read_text()) if e["audio"] == name)


def test_real_danish_off_topic_speech_is_recognized_and_gets_say_it_again(bot, nst, greeting):
    """Real Whisper end to end: an off-topic nst-da sentence through the phone line is
    transcribed (WER checked against the clip's transcript), matched to no article, and the
    bot asks the caller to say it again; the record holds the turn."""
    ref = new_ref()
    report = call(CallScript("33663366", audio=clip(nst / "nst-da-26.wav"), max_seconds=45,
                             quiet_hangup_s=6.0, headers=[(REF_HEADER, ref)]))
    assert report.answered and report.caller_speech_ms is not None
    store = bot.store()
    try:
        records = store.by_ref(ref)
    finally:
        store.close()
    assert records, "the bot wrote no record for the call"
    turn = next(t for t in records[0].as_dict()["turns"] if t["heard"] not in ("(start)", ""))
    assert wer(transcript(nst, "nst-da-26.wav"), turn["heard"]) <= 0.6, turn["heard"]
    assert turn["intent"] in (None, "none") and turn["decision"] in ("rephrase", "menu"), turn
    assert any("forstod jeg desværre ikke" in s for s in turn["said"]), turn
    # the bot answered after the caller finished speaking
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
