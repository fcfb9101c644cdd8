"""``voicebot bench soak --minutes M --concurrency C``: the load of ``bench calls`` held for M
minutes; every minute the same JSON for the calls that ended in it, with the bot's RSS and fd
count per minute so far (a leak shows as a climb). A last line (``"final": true``) covers the
whole run. Not for CI: it runs as long as it is told.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from voicebot.commands.bench_calls import (add_load_arguments, attach_records, emit, measure, new_watch,
                                           prepare, report, validate)
from voicebot.errors import VoicebotError
from voicebot.eventloop import run_loop

MINUTE = 60.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="hold the load of `bench calls` for M minutes, JSON every minute")
    p.add_argument("--minutes", type=float, required=True, help="how long to keep calls coming")
    add_load_arguments(p)
    p.set_defaults(func=run)


def check(args: argparse.Namespace) -> None:
    if not 0 < args.minutes <= 24 * 60:
        raise VoicebotError("--minutes must be more than 0 and at most 1440 (a day)")
    validate(args)


def run(args: argparse.Namespace) -> int:
    from voicebot.bench.system import system_under_test

    check(args)
    settings, utterances, plan, arrivals, account, server = prepare(args)
    with system_under_test(settings, args.start, args.config) as pids:
        errors = run_loop(_soak(args, settings, utterances, plan, arrivals, account, server, pids))
    return 0 if errors == 0 else 1


async def _soak(args, settings, utterances, plan, arrivals, account, server, pids) -> int:
    started = time.monotonic()
    ended: list = []  # results since the last report
    series: dict[str, list] = {"bot_rss_mb": [], "bot_fds": [], "bot_threads": [], "bot_tasks": []}
    watch = new_watch(settings, pids)

    async def every_minute() -> None:
        minute = 0
        while True:
            await asyncio.sleep(MINUTE)
            minute += 1
            batch, ended[:] = list(ended), []
            await _report(args, settings, utterances, arrivals, plan, batch, watch, series,
                          since=started + (minute - 1) * MINUTE, minute=minute)

    reporter = asyncio.create_task(every_minute(), name="soak-reporter")
    try:
        results = await measure(watch, utterances, plan, arrivals, account, server,
                                until=started + args.minutes * MINUTE, on_result=ended.append)
    finally:
        reporter.cancel()
    final = await _report(args, settings, utterances, arrivals, plan, results, watch, series,
                          since=started, minute=None)
    return final["errors"]


async def _report(args, settings, utterances, arrivals, plan, batch, watch, series, *, since: float,
                  minute: int | None) -> dict:
    await asyncio.to_thread(attach_records, settings, [r for r in batch if r.outcome is None], 5.0)
    now = time.monotonic()
    out = report(args, utterances, arrivals, batch, watch, plan, now - since, since=since, until=now)
    if minute is not None:
        for key, name in (("bot_rss_mb", "bot_rss_mb_last"), ("bot_fds", "bot_fds_last"),
                          ("bot_threads", "bot_threads"), ("bot_tasks", "bot_tasks_last")):
            series[key].append(out.get(name))
    out = {"minute": minute, "final": minute is None, **out, "series": series}
    emit(out, args.json)
    return out
