"""espeak-ng gets the text on stdin, never on its command line (which ``ps`` and /proc show to
every local user), and writes the audio to stdout, never to a file."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from voicebot.speech.tts.espeak import EspeakTTS

pytestmark = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng (Debian package) is not installed")

SECRET_LINE = "Dit cpr nummer er 010190-1234, og du ringer fra 20 12 34 56"


def test_the_command_line_carries_options_only():
    cmd = EspeakTTS().command()
    assert "--stdin" in cmd and "--stdout" in cmd
    assert "-w" not in cmd and "--" not in cmd  # no output file, no text argument


def test_real_espeak_never_sees_the_text_in_argv(monkeypatch, tmp_path):
    """The real espeak-ng process, inspected in /proc while it runs (it waits for its stdin)."""
    seen: dict = {}
    real_popen = subprocess.Popen

    def run(cmd, *, input=None, capture_output=False, timeout=None, **kwargs):
        proc = real_popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while b"espeak-ng" not in seen.get("cmdline", b"") and time.monotonic() < deadline:
            seen["cmdline"] = Path(f"/proc/{proc.pid}/cmdline").read_bytes()  # what `ps` shows
            time.sleep(0.01)
        seen["environ"] = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert proc.poll() is None  # still running, waiting for its text on stdin
        seen["input"] = input
        out, err = proc.communicate(input, timeout=timeout)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    monkeypatch.setattr("voicebot.speech.tts.espeak.subprocess.run", run)
    monkeypatch.chdir(tmp_path)
    out = EspeakTTS().synthesize(SECRET_LINE)
    assert b"espeak-ng" in seen["cmdline"]
    for part in (SECRET_LINE, "010190", "cpr nummer", "20 12 34 56"):
        assert part.encode() not in seen["cmdline"] and part.encode() not in seen["environ"]
    assert seen["input"] == SECRET_LINE.encode()
    assert out.rate == 22050 and len(out.samples) / out.rate > 2 and np.abs(out.samples).max() > 1000
    assert list(tmp_path.iterdir()) == []  # no WAV file written anywhere we can see


def test_stdin_synthesis_equals_the_old_argv_synthesis(tmp_path):
    """Same audio as `espeak-ng ... -w FILE -- TEXT` gave (Danish letters included)."""
    from voicebot.speech.audio import read_wav

    text = "Åbningstiderne på rådhuset er fra klokken 8 til 14."
    engine = EspeakTTS()
    c = engine.config
    wav = tmp_path / "argv.wav"
    subprocess.run([engine.binary, "-v", c.voice, "-s", str(c.speed), "-p", str(c.pitch), "-w", str(wav), "--", text],
                   check=True)
    expected, rate = read_wav(wav)
    out = engine.synthesize(text)
    assert out.rate == rate
    np.testing.assert_array_equal(out.samples, expected)


def test_empty_text_is_silence():
    out = EspeakTTS().synthesize("")
    assert len(out.samples) == 0 and out.rate == 22050
