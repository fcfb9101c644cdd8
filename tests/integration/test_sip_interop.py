"""The project's own SIP caller must behave like a real softphone: checked against baresip.

Both place the same call to the main number and say the same real Danish sentence after the
greeting; the bot must recognize both alike, and both callers must hear the same amount of bot
audio (the greeting + "Det forstod jeg desværre ikke …" for the off-topic sentence).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.integration.telephony import OPEN_TIME, call, greeting_audio, set_clock, sip_password
from tests.integration.test_voice_calls import NST, clip, transcript
from voicebot.sip.caller import RATE, CallScript
from voicebot.speech.audio import read_wav, voiced_seconds, write_wav
from voicebot.speech.wer import wer

pytestmark = pytest.mark.integration

CLIP = "nst-da-26.wav"  # off-topic (food), no digits (digit runs are redacted in the log)
CALL_SECONDS = 29  # past the reply, before the no-input reprompt (6 s after it)


def baresip_call(tmp_path, number: str, speech: np.ndarray, speak_at: float) -> tuple[float, str]:
    """Call with baresip, saying ``speech`` at ``speak_at``; return (voiced seconds heard, log)."""
    silence = lambda s: np.zeros(int(RATE * s), np.int16)  # noqa: E731
    # baresip hangs up when its audio source ends: pad to the end of the call
    write_wav(tmp_path / "say.wav", np.concatenate([silence(speak_at), speech, silence(CALL_SECONDS)]), RATE)
    (tmp_path / "rec").mkdir()
    (tmp_path / "config").write_text(f"""sip_listen 127.0.0.1:0
net_interface 127.0.0.1
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
audio_player aufile,/dev/null
audio_source aufile,{tmp_path}/say.wav
audio_alert aufile,/dev/null
snd_path {tmp_path}/rec
""")
    (tmp_path / "accounts").write_text(f"<sip:softphone@127.0.0.1>;auth_pass={sip_password()};regint=0\n")
    proc = subprocess.run(["baresip", "-f", str(tmp_path), "-e", f"/dial sip:{number}@127.0.0.1",
                           "-t", str(CALL_SECONDS)], capture_output=True, text=True, timeout=CALL_SECONDS + 20)
    heard = sorted((tmp_path / "rec").glob("*-dec.wav"))
    assert heard, f"baresip recorded nothing:\n{proc.stdout[-2000:]}"
    samples, rate = read_wav(heard[0])
    return voiced_seconds(samples, rate), proc.stdout


def heard_texts(log: str) -> list[str]:
    return [t.strip("'") for t in re.findall(r"'heard' .*? text=('[^']*'|\S+)", log)]


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (make setup installs baresip-core)")
def test_own_caller_behaves_like_baresip(bot, tmp_path):
    if not (NST / "set.yaml").exists():
        pytest.skip(f"real Danish speech not found at {NST} (CI copies ../shared beside the clone)")
    speech = clip(NST / CLIP)
    reference = transcript(NST, CLIP)
    set_clock(OPEN_TIME)
    speak_at = len(greeting_audio(OPEN_TIME)) / RATE + 1.0  # after the greeting

    baresip_voiced, log = baresip_call(tmp_path, "33663366", speech, speak_at)
    assert "Call established" in log
    by_baresip = heard_texts(bot.log())[-1]

    ours = call(CallScript("33663366", audio=speech, speak_at=speak_at, max_seconds=CALL_SECONDS))
    by_ours = heard_texts(bot.log())[-1]
    assert ours.answered

    # the bot understood both callers' audio alike
    assert wer(reference, by_baresip) <= 0.6, by_baresip
    assert wer(reference, by_ours) <= 0.6, by_ours
    # and both heard the same bot audio (the greeting + the request to say it again)
    assert baresip_voiced > 6
    assert abs(ours.bot_audio_seconds - baresip_voiced) <= 0.15 * baresip_voiced, (ours.bot_audio_seconds, baresip_voiced)
