"""The project's own SIP caller must behave like a real softphone: checked against baresip.

Both place the same call to the main number; both must be answered by the bot, hear the same
greeting (same voiced length within 10 %), and see the bot hang up.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.telephony import call, sip_password
from voicebot.sip.caller import CallScript
from voicebot.speech.audio import read_wav, voiced_seconds
from voicebot.speech.tts.espeak import EspeakTTS
from voicebot.speech.audio import resample, write_wav

pytestmark = pytest.mark.integration


def baresip_call(tmp_path, number: str, seconds: int = 15) -> tuple[float, str]:
    """Call ``number`` with baresip; return (voiced seconds heard, baresip's log)."""
    say = EspeakTTS().synthesize("Hej, jeg har mistet mit pas")
    speech = resample(say.samples, say.rate, 8000)
    import numpy as np

    # baresip hangs up when its audio source ends: pad the speech with silence
    write_wav(tmp_path / "say.wav", np.concatenate([speech, np.zeros(8000 * seconds, np.int16)]), 8000)
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
                           "-t", str(seconds)], capture_output=True, text=True, timeout=seconds + 20)
    heard = sorted((tmp_path / "rec").glob("*-dec.wav"))
    assert heard, f"baresip recorded nothing:\n{proc.stdout[-2000:]}"
    samples, rate = read_wav(heard[0])
    return voiced_seconds(samples, rate), proc.stdout


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (make setup installs baresip-core)")
def test_own_caller_hears_what_baresip_hears(bot, tmp_path):
    baresip_voiced, log = baresip_call(tmp_path, "33663366")
    assert "Call established" in log
    assert "terminated" in log  # the bot hung up before baresip's timer
    ours = call(CallScript("33663366", max_seconds=20))
    assert ours.answered and ours.hangup_by == "bot"
    assert baresip_voiced > 1
    assert abs(ours.bot_audio_seconds - baresip_voiced) <= 0.1 * baresip_voiced, (ours.bot_audio_seconds, baresip_voiced)
