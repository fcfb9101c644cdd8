"""``voicebot bench calls --calls N --concurrency C``: the running system under load.

N real SIP calls, C at a time, arriving ``--rate`` a second (``--burst``: the first C at once).
Each caller listens to the greeting, asks ``--turns`` questions in real Danish speech (the nst-da
clips beside the clone, or ``--utterances FILE``; espeak-ng only when there are none) and listens
to each reply. Measured at the caller: turn latency (end of its speech → the reply's first frame),
underruns (gaps over 40 ms inside the bot's speech) and RTP jitter; at the machine: CPU and RSS
of the bot and Asterisk; from the bot's records: each turn's timing breakdown. ``--start`` starts
Asterisk and the bot for the run (under the test suite's Asterisk lock) and stops them after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from voicebot.errors import VoicebotError
from voicebot.eventloop import run_loop

MAX_TURNS = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calls", help="load: N real SIP calls, C at a time (latency, underruns, CPU/RSS)")
    p.add_argument("--calls", type=int, default=20, help="calls in all (default 20)")
    add_load_arguments(p)
    p.set_defaults(func=run)


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``bench calls`` and ``bench soak`` share."""
    p.add_argument("--concurrency", type=int, default=10, help="calls at once (default 10)")
    p.add_argument("--turns", type=int, default=2, help="questions per call (default 2)")
    p.add_argument("--rate", type=float, help="new calls per second while slots are free (default 2)")
    p.add_argument("--burst", action="store_true", help="the first C calls arrive in the same instant")
    p.add_argument("--utterances", metavar="FILE", help="text file of WAV paths the callers say "
                   "(default: ../shared/testdata/nst-da; espeak-ng when neither exists)")
    p.add_argument("--reply-timeout", type=float, default=5.0, metavar="S",
                   help="a reply later than this counts in no_reply (default 5)")
    p.add_argument("--number", default="33663366")
    p.add_argument("--server", default="127.0.0.1:5060", help="SIP server host:port")
    p.add_argument("--start", action="store_true", help="start Asterisk and the bot for the run, stop them after")
    p.add_argument("--json", action="store_true")


def validate(args: argparse.Namespace) -> None:
    """Clear errors for arguments that cannot make a run (before anything is dialled)."""
    calls = getattr(args, "calls", None)
    if calls is not None and calls < 1:
        raise VoicebotError("--calls must be at least 1")
    if args.concurrency < 1:
        raise VoicebotError("--concurrency must be at least 1")
    if calls is not None and args.concurrency > calls:
        raise VoicebotError(f"--concurrency {args.concurrency} is more than --calls {calls}: "
                            f"no more than {calls} calls can run at once")
    if not 1 <= args.turns <= MAX_TURNS:
        raise VoicebotError(f"--turns must be 1-{MAX_TURNS}")
    if args.burst and args.rate is not None:
        raise VoicebotError("--burst and --rate do not combine: --burst means all at once")
    if args.rate is not None and args.rate <= 0:
        raise VoicebotError("--rate must be more than 0 calls per second")
    if not 0 < args.reply_timeout < 15:
        raise VoicebotError("--reply-timeout must be between 0 and 15 seconds")
    host, _, port = args.server.partition(":")
    if not host or (port and not port.isdigit()):
        raise VoicebotError(f"--server {args.server!r}: expected HOST or HOST:PORT")
    if args.utterances and not Path(args.utterances).is_file():
        raise VoicebotError(f"--utterances {args.utterances}: no such file")


def prepare(args: argparse.Namespace):
    """Validated arguments → (settings, utterances, plan, arrivals, account, server)."""
    from voicebot.bench.load import Arrivals, CallPlan
    from voicebot.bench.utterances import load
    from voicebot.config import load_settings, sip_password

    validate(args)
    settings = load_settings(args.config)
    password = sip_password("softphone")
    if not password:
        raise VoicebotError("no SIP password for softphone: run `asterisk/pbx install` or set "
                            "VOICEBOT_SIP_PASSWORD_SOFTPHONE")
    utterances = load(Path(args.utterances) if args.utterances else None)
    plan = CallPlan(number=args.number, turns=args.turns, reply_timeout_s=args.reply_timeout)
    arrivals = Arrivals(args.concurrency, args.rate or 2.0, args.burst)
    host, _, port = args.server.partition(":")
    return settings, utterances, plan, arrivals, ("softphone", password), (host, int(port or 5060))


def header(args: argparse.Namespace, utterances, arrivals) -> dict:
    return {"concurrency": args.concurrency, "turns": args.turns,
            "arrival": "burst" if arrivals.burst else f"{arrivals.rate:g}/s",
            "audio_source": utterances.source, "clips": len(utterances.clips)}


def attach_records(settings, results, wait_s: float = 10.0) -> None:
    """Each answered call's outcome and utterance-turn timings from the bot's store (the call's
    ``X-Voicebot-Ref``); calls the bot never took (full: human route) have no record."""
    from voicebot.commands.call import fetch_record

    deadline = time.monotonic() + wait_s
    for r in results:
        if not r.answered:
            continue
        record = fetch_record(settings, r.ref, timeout=max(0.0, deadline - time.monotonic()))
        if record is not None:
            r.outcome = record.get("outcome")
            r.timings = [t["timings"] for t in record.get("turns", []) if "asr_ms" in t.get("timings", {})]


def new_watch(settings, pids: dict[str, int | None]):
    """Sampling of the bot, Asterisk and this process (and the bot's /healthz)."""
    from voicebot.bench.procs import ProcWatch
    from voicebot.bench.system import health_url

    return ProcWatch({"bot": pids["bot"], "asterisk": pids["asterisk"], "bench": os.getpid()},
                     health_url(settings))


async def measure(watch, utterances, plan, arrivals, account, server, **load_args):
    """Run the load while ``watch`` samples the processes; returns the calls' results."""
    from voicebot.bench.load import run_load

    async with asyncio.TaskGroup() as group:
        sampler = group.create_task(watch.run())
        try:
            return await run_load(utterances, plan, arrivals, account, server, **load_args)
        finally:
            sampler.cancel()


def report(args, utterances, arrivals, results, watch, plan, seconds: float,
           since: float = 0.0, until: float = float("inf")) -> dict:
    from voicebot.bench.summary import summarise

    out = {**header(args, utterances, arrivals), **summarise(results, plan.turns),
           **watch.summary(since, until), "seconds": round(seconds, 1)}
    out["calls"] = len(results)
    return out


def run(args: argparse.Namespace) -> int:
    from voicebot.bench.system import system_under_test

    settings, utterances, plan, arrivals, account, server = prepare(args)
    with system_under_test(settings, args.start, args.config) as pids:
        started = time.monotonic()
        watch = new_watch(settings, pids)
        results = run_loop(measure(watch, utterances, plan, arrivals, account, server, calls=args.calls))
        seconds = time.monotonic() - started
        attach_records(settings, results)
    out = report(args, utterances, arrivals, results, watch, plan, seconds)
    emit(out, args.json)
    return 0 if out["errors"] == 0 else 1


def emit(out: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out, ensure_ascii=False), flush=True)
        return
    for key, value in out.items():
        print(f"{key:26} {value}", flush=True)
