"""``voicebot bench calls`` end to end: two real calls at once against the test bot (real Whisper,
real Danish speech when ../shared/testdata is there), the JSON it prints, and the bot's records."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.telephony import OPEN_TIME, VOICEBOT, set_clock
from voicebot.config import PROJECT_ROOT

pytestmark = pytest.mark.integration

KEYS = {"calls", "completed", "errors", "latency_ms", "underruns", "rtp_out_jitter_ms_p99", "bot_cpu_percent",
        "bot_rss_mb", "asterisk_cpu_percent", "breakdown", "audio_source", "no_reply"}


def test_bench_calls_two_at_once_completes_both(bot):
    set_clock(OPEN_TIME)
    try:
        done = subprocess.run([str(VOICEBOT), "--config", str(bot.config), "bench", "calls", "--calls", "2",
                               "--concurrency", "2", "--turns", "1", "--json"],
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=90)
    finally:
        set_clock(None)
    assert done.stdout.strip(), done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert KEYS <= out.keys(), sorted(KEYS - out.keys())
    assert out["calls"] == 2 and out["completed"] == 2 and out["errors"] == 0, out
    assert out["latency_ms"]["n"] == 2 and out["latency_ms"]["p50"] > 0
    assert set(out["latency_ms"]) == {"n", "p50", "p95", "max"}
    assert out["bot_cpu_percent"] is not None and out["bot_rss_mb"] > 0
    assert out["breakdown"]["turns"] == 2, out["breakdown"]  # read from the bot's records by ref
    assert done.returncode == 0, done.stderr[-2000:]
