"""``voicebot bench calls`` / ``soak``: the pure parts (statistics, gaps in the bot's voice, the
arrival schedule, argument checks, verdicts, /proc sampling) and the scheduler with fake calls."""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
import pytest

from voicebot.bench import load as load_mod
from voicebot.bench.load import Arrivals, CallPlan, CallResult, run_load
from voicebot.bench.procs import read_proc, usage
from voicebot.bench.summary import breakdown, latency_stats, percentile, summarise, verdict
from voicebot.bench.utterances import Utterance, Utterances, read_list
from voicebot.cli import build_parser
from voicebot.commands.bench_calls import validate
from voicebot.commands.bench_soak import check
from voicebot.errors import VoicebotError
from voicebot.sip.measure import jitter_ms, speech_end_ms, speech_gaps, underruns


# ---- statistics ----------------------------------------------------------------------------------

def test_percentiles_interpolate_and_handle_no_values():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 95) == 95.0
    assert percentile([], 95) is None
    assert latency_stats([300.0, 100.0, 200.0]) == {"n": 3, "p50": 200.0, "p95": 290.0, "max": 300.0}
    assert latency_stats([]) == {"n": 0, "p50": None, "p95": None, "max": None}


# ---- gaps in the bot's voice -------------------------------------------------------------------

def frames(start: float, count: int, step: float = 20.0) -> list[float]:
    return [start + i * step for i in range(count)]


def test_steady_speech_has_no_underrun_and_no_jitter():
    times = frames(1000, 100)
    gaps = speech_gaps(times, [(1000, 3000)])
    assert len(gaps) == 99 and underruns(gaps) == 0
    assert max(jitter_ms(gaps)) == 0


def test_a_late_frame_inside_speech_is_one_underrun():
    times = frames(1000, 50) + frames(1000 + 49 * 20 + 60, 50)  # one 60 ms hole mid-speech
    gaps = speech_gaps(times, [(1000, int(times[-1]) + 20)])
    assert underruns(gaps) == 1
    assert max(jitter_ms(gaps)) == pytest.approx(40)


def test_pauses_between_the_bots_turns_are_not_underruns():
    # two prompts 2 s apart (RTP stops between them), and silence frames outside speech
    times = frames(0, 20) + frames(1000, 50) + frames(5000, 50)
    gaps = speech_gaps(times, [(1000, 2000), (5000, 6000)])
    assert len(gaps) == 98 and underruns(gaps) == 0


def test_jitter_of_early_and_late_frames():
    gaps = speech_gaps([0, 25, 40, 75], [(0, 100)])
    assert gaps == [25, 15, 35]
    assert jitter_ms(gaps) == [5, 5, 15]
    assert underruns([40.0, 40.1]) == 1  # more than 40 ms counts, exactly 40 does not


def test_speech_end_is_found_above_the_noise_floor():
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(8000) * 20).astype(np.int16)  # ~-64 dBFS
    voice = (rng.standard_normal(8000) * 300).astype(np.int16)  # ~-41 dBFS: quiet speech
    clip = np.concatenate([noise, voice, noise])
    assert speech_end_ms(clip, 8000) == 2000.0
    assert speech_end_ms(np.zeros(0, np.int16), 8000) == 0.0


# ---- arrivals and scheduling --------------------------------------------------------------------

def test_arrivals_are_spread_unless_burst():
    assert list(Arrivals(4, rate=2.0).offsets(4)) == [0.0, 0.5, 1.0, 1.5]
    assert list(Arrivals(4, burst=True).offsets(4)) == [0.0] * 4
    endless = Arrivals(2, rate=4.0).offsets()
    assert [next(endless) for _ in range(3)] == [0.0, 0.25, 0.5]


@pytest.fixture
def fake_calls(monkeypatch):
    """one_call replaced by a 0.2 s coroutine that records when each started and how many ran."""
    log = {"starts": [], "running": 0, "peak": 0}

    async def one_call(index, utterances, plan, account, server):
        log["starts"].append(time.monotonic())
        log["running"] += 1
        log["peak"] = max(log["peak"], log["running"])
        await asyncio.sleep(0.2)
        log["running"] -= 1
        return CallResult(index, f"ref{index}", answered=True)

    monkeypatch.setattr(load_mod, "one_call", one_call)
    return log


def run(arrivals: Arrivals, **kw) -> list[CallResult]:
    return asyncio.run(run_load(None, CallPlan(), arrivals, ("u", "p"), ("127.0.0.1", 5060), **kw))


def test_load_keeps_to_the_concurrency_and_spreads_arrivals(fake_calls):
    results = run(Arrivals(3, rate=20.0), calls=6)
    assert sorted(r.index for r in results) == list(range(6))
    assert fake_calls["peak"] == 3
    first = fake_calls["starts"][:3]
    assert first[2] - first[0] >= 0.09  # 20/s: the first three arrive over ~100 ms


def test_burst_starts_the_first_c_together(fake_calls):
    run(Arrivals(3, burst=True), calls=3)
    starts = fake_calls["starts"]
    assert starts[-1] - starts[0] < 0.05


def test_soak_stops_starting_calls_at_the_deadline(fake_calls):
    seen = []
    results = run(Arrivals(2, rate=20.0), until=time.monotonic() + 0.5, on_result=seen.append)
    assert 2 <= len(results) <= 6 and len(seen) == len(results)
    assert fake_calls["running"] == 0  # every call that started has finished


# ---- verdicts and the JSON ----------------------------------------------------------------------

def result(**kw) -> CallResult:
    defaults = {"answered": True, "turns_done": 2, "latencies_ms": [800.0, 900.0], "first_audio_ms": 300.0}
    return CallResult(0, "r", **{**defaults, **kw})


def test_verdicts():
    assert verdict(result(), 2) == ("completed", None)
    assert verdict(result(answered=False, error="not answered: 503"), 2) == ("error", "not answered: 503")
    assert verdict(result(error="waited in silence", turns_done=0), 2)[0] == "error"
    handed = result(turns_done=1, ended_by_bot=True, heard_after_speech=True)
    assert verdict(handed, 2) == ("handed_over", None)
    dropped = result(turns_done=1, ended_by_bot=True, heard_after_speech=False)
    assert verdict(dropped, 2) == ("error", "hung up on without a word")
    # every turn got a reply, but the last was the apology before the human route (ASR overloaded)
    assert verdict(result(outcome="failed"), 2) == ("handed_over", None)
    assert verdict(result(outcome="transferred:human-queue", turns_done=1), 2) == ("handed_over", None)
    assert verdict(result(outcome="abandoned"), 2) == ("completed", None)


def test_summary_counts_and_breakdown():
    timings = [{"eos_wait_ms": 600, "asr_ms": 300, "match_ms": 10, "first_audio_ms": 40, "speculative": 1,
                "decode_ms": 700, "decode_wait_ms": 120},
               {"eos_wait_ms": 600, "asr_ms": 500, "match_ms": 20, "first_audio_ms": 60, "speculative": 0,
                "decode_ms": 450}]
    results = [result(gaps_ms=[20.0, 20.5, 61.0], timings=timings, outcome="abandoned", lost_frames=2),
               result(turns_done=0, error="no greeting", latencies_ms=[], first_audio_ms=None)]
    out = summarise(results, turns=2)
    assert (out["calls"], out["completed"], out["errors"]) == (2, 1, 1)
    assert out["error_kinds"] == {"no greeting": 1}
    assert out["latency_ms"]["n"] == 2 and out["latency_ms"]["max"] == 900.0
    assert out["underruns"] == 1 and out["underrun_calls"] == 1 and out["max_gap_ms"] == 61.0
    assert out["lost_frames"] == 2
    assert out["outcomes"] == {"abandoned": 1, "no record": 1}
    assert out["breakdown"]["asr_ms"] == {"p50": 400.0, "p95": 490.0}
    assert out["breakdown"]["decode_ms"] == {"p50": 575.0, "p95": 687.5}
    assert out["breakdown"]["decode_wait_ms"] == {"p50": 120.0, "p95": 120.0}  # speculative turns only
    assert out["breakdown"]["speculative_share"] == 0.5
    assert breakdown([])["turns"] == 0


# ---- arguments ----------------------------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


@pytest.mark.parametrize("argv, message", [
    (("calls", "--calls", "0"), "--calls must be at least 1"),
    (("calls", "--calls", "4", "--concurrency", "0"), "--concurrency must be at least 1"),
    (("calls", "--calls", "4", "--concurrency", "8"), "more than --calls 4"),
    (("calls", "--turns", "0"), "--turns must be 1-10"),
    (("calls", "--burst", "--rate", "3"), "do not combine"),
    (("calls", "--rate", "0"), "--rate must be more than 0"),
    (("calls", "--server", "127.0.0.1:sip"), "expected HOST or HOST:PORT"),
    (("calls", "--utterances", "/nonexistent/list.txt"), "no such file"),
])
def test_bad_arguments_are_named(argv, message):
    with pytest.raises(VoicebotError, match=message):
        validate(parse(*argv))


def test_good_arguments_and_soak_minutes():
    validate(parse("calls", "--calls", "60", "--concurrency", "20", "--burst"))
    check(parse("soak", "--minutes", "5", "--concurrency", "4"))
    with pytest.raises(VoicebotError, match="--minutes"):
        check(parse("soak", "--minutes", "0"))


def test_utterance_list_names_the_bad_line(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("# clips\na.wav\n\nmissing.wav\n")
    with pytest.raises(VoicebotError, match=r"list.txt:4: no such WAV file"):
        read_list(listing)
    listing.write_text("a.wav  # relative to the list\n")
    assert read_list(listing) == [wav.resolve()]


def test_clips_are_picked_round_robin():
    clips = [Utterance(str(i), np.zeros(160, np.int16), 20.0) for i in range(3)]
    u = Utterances("test", clips)
    assert [u.pick(c, t, 2).name for c in range(2) for t in range(2)] == ["0", "1", "2", "0"]


# ---- /proc -----------------------------------------------------------------------------------------

def test_read_proc_and_usage(tmp_path):
    base = tmp_path / "42"
    (base / "fd").mkdir(parents=True)
    for i in range(3):
        (base / "fd" / str(i)).touch()
    # comm with spaces and a parenthesis; utime 150, stime 50 ticks; 7 threads
    rest = ["S"] + ["0"] * 10 + ["150", "50"] + ["0"] * 4 + ["7"]
    (base / "stat").write_text(f"42 (voice bot) x) {' '.join(rest)} 0 0\n")
    (base / "status").write_text("Name:\tvoicebot\nVmRSS:\t  204800 kB\n")
    s = read_proc(42, proc=tmp_path)
    assert s is not None and (s.threads, s.rss_kb, s.fds) == (7, 204800, 3)
    assert read_proc(43, proc=tmp_path) is None
    a, b = s, type(s)(s.at + 2.0, s.cpu_s + 1.0, 102400, 7, 5)
    u = usage([a, b])
    assert u["cpu_percent"] == 50.0 and u["rss_mb"] == 200.0 and u["rss_mb_last"] == 100.0
    assert u["fds"] == 5 and usage([]) == {"cpu_percent": None}


def test_machine_cpu_and_what_others_used(tmp_path):
    from voicebot.bench.procs import CLOCK_TICKS, ProcSample, ProcWatch, read_machine

    stat = tmp_path / "stat"
    stat.write_text(f"cpu  {CLOCK_TICKS} 0 {CLOCK_TICKS} 500 100 0 {CLOCK_TICKS} 0 0 0\ncpu0 1 2 3\n")
    assert read_machine(stat) == (3.0, 1.0)  # user + system + softirq; idle and iowait are not busy
    watch = ProcWatch({"bot": 1})
    watch.samples["bot"] = [ProcSample(0.0, 0.0, 1024, 1, 1), ProcSample(10.0, 5.0, 1024, 1, 1)]
    watch.machine = [(0.0, (100.0, 10.0)), (10.0, (115.0, 11.0))]
    out = watch.summary()
    assert out["bot_cpu_percent"] == 50.0
    assert out["machine_cpu_percent"] == 150.0 and out["irq_cpu_percent"] == 10.0
    assert out["other_cpu_percent"] == 90.0


def test_arrival_times_are_the_kernels_not_the_busy_readers():
    """Two RTP packets 60 ms apart, read only after the event loop was blocked for 150 ms: the
    listener still sees them 60 ms apart (the caller's own lag is not the bot's stutter)."""
    import socket

    from voicebot.sip.caller import PCMU, Listener, StampedEndpoint
    from voicebot.telephony.rtp import RtpPacket, pack

    async def scenario() -> list[float]:
        listener = Listener()
        endpoint = await StampedEndpoint.open("127.0.0.1", PCMU, listener.on_frame)
        listener.clock = endpoint.arrival
        listener.t0 = time.monotonic()
        await asyncio.sleep(0.05)  # the kernel switches time-stamping on in the background
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for seq in range(2):
                s.sendto(pack(RtpPacket(0, seq, seq * 160, 1, bytes(160))), endpoint.local_address)
                time.sleep(0.06 if seq == 0 else 0.15)  # blocks the loop: nothing is read meanwhile
        await asyncio.sleep(0.05)
        endpoint.close()
        return [t for t, _ in listener.loud]

    times = asyncio.run(scenario())
    assert len(times) == 2
    assert 50 <= times[1] - times[0] <= 80, times
