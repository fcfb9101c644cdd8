"""The benchmark's JSON from the calls' results: pure functions, unit-tested.

A call is ``handed_over`` when the bot's record says it gave the call to people (a transfer, or
``failed``: the technical-error line, e.g. when speech recognition is overloaded) or when the far
end ended it early after the caller heard it (the human route straight away when the bot was
full); ``completed`` when every turn got a reply otherwise; an ``error`` when the caller was not
answered, heard no greeting, was left in silence, or was hung up on without a word.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from voicebot.bench.load import CallResult
from voicebot.sip.measure import jitter_ms, underruns

# what the bot records per turn (decode_ms: the decode itself; decode_wait_ms: its wait for a thread)
TIMINGS = ("eos_wait_ms", "asr_ms", "decode_ms", "decode_wait_ms", "match_ms", "first_audio_ms")
HANDED_OVER = ("failed", "overload", "shutdown")  # record outcomes of a call given to the human route


def handed_over(outcome: str | None) -> bool:
    return outcome is not None and (outcome in HANDED_OVER or outcome.startswith("transferred"))


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (as numpy), None for no values."""
    return round(float(np.percentile(values, q)), 1) if values else None


def latency_stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": round(max(values), 1) if values else None}


def verdict(r: CallResult, turns: int) -> tuple[str, str | None]:
    """("completed" | "handed_over" | "error", why it is an error)."""
    if r.error:
        return "error", r.error
    if handed_over(r.outcome):  # also when the caller hung up before the hand-over was done
        return "handed_over", None
    if r.turns_done >= turns:
        return "completed", None
    if r.ended_by_bot:
        return ("handed_over", None) if r.heard_after_speech else ("error", "hung up on without a word")
    return "error", "call ended before its turns"


def breakdown(results: list[CallResult]) -> dict:
    """p50/p95 of each per-turn timing the bot recorded for these calls, and how many of the
    turns' transcripts came from a speculative decode (started in the end-of-speech wait)."""
    turns = [t for r in results for t in r.timings]
    out: dict = {"turns": len(turns)}
    for key in TIMINGS:
        values = [float(t[key]) for t in turns if key in t]
        out[key] = {"p50": percentile(values, 50), "p95": percentile(values, 95)}
    decoded = [t["speculative"] for t in turns if "speculative" in t]
    out["speculative_share"] = round(sum(decoded) / len(decoded), 2) if decoded else None
    return out


def summarise(results: list[CallResult], turns: int) -> dict:
    """The caller-side part of the JSON (the processes' part comes from ``ProcWatch``)."""
    verdicts = [verdict(r, turns) for r in results]
    kinds = Counter(v for v, _ in verdicts)
    latencies = [ms for r in results for ms in r.latencies_ms]
    gaps = [g for r in results for g in r.gaps_ms]
    jitter = jitter_ms(gaps)
    return {
        "calls": len(results),
        "completed": kinds["completed"],
        "handed_over": kinds["handed_over"],
        "errors": kinds["error"],
        "error_kinds": dict(Counter(why for v, why in verdicts if v == "error")),
        "no_reply": sum(r.no_reply for r in results),
        "latency_ms": latency_stats(latencies),
        "first_audio_ms": latency_stats([r.first_audio_ms for r in results if r.first_audio_ms is not None]),
        "underruns": underruns(gaps),
        "underrun_calls": sum(1 for r in results if underruns(r.gaps_ms)),
        "max_gap_ms": round(max(gaps), 1) if gaps else None,
        "lost_frames": sum(r.lost_frames for r in results),
        "rtp_out_jitter_ms_p99": percentile(jitter, 99),
        "breakdown": breakdown(results),
        "outcomes": dict(Counter(r.outcome or "no record" for r in results if r.answered)),
    }
