"""Many real SIP calls against the running system, C at a time: each caller listens to the
greeting, asks its questions (real speech) and listens to each reply, like a citizen would.

Times are the caller's: a turn's latency runs from the last voiced frame the caller sent to the
first frame of the bot's reply that reached the caller's socket (the kernel's receive time, see
``StampedEndpoint``), so a busy benchmark process does not show up as a slow bot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from voicebot.bench.utterances import Utterance, Utterances
from voicebot.sip.caller import CallReport, CallScript, LiveCall, place_call
from voicebot.sip.measure import speech_gaps
from voicebot.sip.script import REF_HEADER, new_ref
from voicebot.telephony.rtp import FRAME_MS

log = logging.getLogger("voicebot.bench")


@dataclass(frozen=True)
class CallPlan:
    """What every caller does, and how long it waits."""

    number: str = "33663366"
    turns: int = 2
    reply_timeout_s: float = 5.0      # no reply within this: the turn counts in ``no_reply``
    silence_limit_s: float = 15.0     # nothing at all within this: the caller waited in silence
    greeting_timeout_s: float = 10.0
    quiet_gap_s: float = 1.2          # the bot's turn is over after this much quiet
    max_seconds: float = 150.0        # the whole call


@dataclass(frozen=True)
class Arrivals:
    """When calls arrive: ``rate`` new calls a second (a slot must be free), or all at once."""

    concurrency: int
    rate: float = 2.0
    burst: bool = False

    def offset(self, index: int) -> float:
        """Seconds after the start at which call ``index`` arrives (it then waits for a slot)."""
        return 0.0 if self.burst else index / self.rate

    def offsets(self, count: int | None = None) -> Iterator[float]:
        indexes = range(count) if count is not None else itertools.count()
        return (self.offset(i) for i in indexes)


@dataclass
class CallResult:
    index: int
    ref: str
    answered: bool = False
    status: str = ""
    error: str | None = None            # set when the caller was failed (not answered, silence...)
    first_audio_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list)  # one per turn that got a reply
    no_reply: int = 0                   # turns whose reply took longer than reply_timeout_s
    turns_done: int = 0
    last_speech_end_ms: float = 0.0
    ended_by_bot: bool = False          # the far end hung up before the caller was done
    heard_after_speech: bool = False    # the caller heard the bot after its last speech
    gaps_ms: list[float] = field(default_factory=list)  # inter-arrival times inside bot speech
    lost_frames: int = 0                # RTP sequence gaps in what the caller received
    duration_s: float = 0.0
    ended_at: float = 0.0               # time.monotonic()
    outcome: str | None = None          # from the bot's record (filled in afterwards)
    timings: list[dict[str, int]] = field(default_factory=list)  # the record's per-turn timings


async def converse(call: LiveCall, clips: list[Utterance], plan: CallPlan, result: CallResult) -> None:
    """Greeting, then per clip: say it, wait for the reply, listen until the bot is quiet."""
    greeting = await call.wait_heard(0, plan.greeting_timeout_s)
    if greeting is None:
        if not call.ended:
            result.error = "no greeting"
        return
    result.first_audio_ms = round(greeting, 1)
    if not await call.wait_bot(greeting, plan.quiet_gap_s):
        return
    for clip in clips:
        first = call.next_speech_frame
        await call.say(clip.samples)
        voiced = first + max(0, math.ceil(clip.speech_end_ms / FRAME_MS) - 1)
        if call.ended or voiced >= len(call.sent_ms):
            return
        end = call.sent_ms[voiced] + FRAME_MS
        result.last_speech_end_ms = end
        reply = await call.wait_heard(end, plan.silence_limit_s)
        if reply is None:
            if not call.ended:
                result.error = "waited in silence"
            return
        latency = reply - end
        result.latencies_ms.append(round(latency, 1))
        result.no_reply += latency > plan.reply_timeout_s * 1000
        result.turns_done += 1
        if not await call.wait_bot(reply, plan.quiet_gap_s):
            return


async def one_call(index: int, utterances: Utterances, plan: CallPlan, account: tuple[str, str],
                   server: tuple[str, int]) -> CallResult:
    """One caller; never raises (a failure is the result's ``error``)."""
    result = CallResult(index, new_ref())
    clips = [utterances.pick(index, t, plan.turns) for t in range(plan.turns)]
    script = CallScript(plan.number, max_seconds=plan.max_seconds, headers=[(REF_HEADER, result.ref)])
    try:
        report = await place_call(script, *account, server,
                                  drive=lambda call: converse(call, clips, plan, result))
        fill_from_report(result, report, plan)
    except Exception as exc:  # noqa: BLE001 - task boundary: one failed call must not end the run
        log.warning("bench call failed", extra={"call": index, "error": f"{type(exc).__name__}: {exc}"})
        result.error = f"{type(exc).__name__}: {exc}"
    result.ended_at = time.monotonic()
    return result


def fill_from_report(result: CallResult, report: CallReport, plan: CallPlan) -> None:
    result.answered, result.status = report.answered, f"{report.status} {report.reason}"
    if not report.answered:
        result.error = f"not answered: {result.status}"
        return
    result.duration_s = report.duration_s
    if report.timed_out:
        result.error = result.error or f"call still going after {plan.max_seconds:g} s"
    result.ended_by_bot = report.hangup_by == "bot" and result.turns_done < plan.turns
    result.heard_after_speech = any(b > result.last_speech_end_ms for _, b in report.bot_segments_ms)
    result.gaps_ms = [round(g, 2) for g in speech_gaps(report.frame_ms, report.bot_segments_ms)]
    result.lost_frames = report.lost_frames


async def run_load(utterances: Utterances, plan: CallPlan, arrivals: Arrivals, account: tuple[str, str],
                   server: tuple[str, int], *, calls: int | None = None, until: float | None = None,
                   on_result: Callable[[CallResult], None] | None = None) -> list[CallResult]:
    """``calls`` calls (or new ones until ``until``, a ``time.monotonic()`` deadline), at most
    ``arrivals.concurrency`` at once; returns every result in the order the calls ended."""
    results: list[CallResult] = []
    slots = asyncio.Semaphore(arrivals.concurrency)
    start = time.monotonic()

    async def call(index: int) -> None:
        try:
            result = await one_call(index, utterances, plan, account, server)
        finally:
            slots.release()
        results.append(result)
        if on_result is not None:
            on_result(result)

    async with asyncio.TaskGroup() as group:
        for index, offset in enumerate(arrivals.offsets(calls)):
            delay = start + offset - time.monotonic()
            if until is not None and time.monotonic() + max(0.0, delay) >= until:
                break
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            if until is not None and time.monotonic() >= until:
                slots.release()
                break
            group.create_task(call(index), name=f"bench-call-{index}")
    return results
