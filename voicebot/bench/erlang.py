"""Erlang B and Erlang C, for the sizing in docs/capacity.md. Standard library only.

Two kinds of capacity meet in a phone bot, and they need different formulas:

- **Channels** (SIP trunk lines, the bot's ``voice.max_calls`` slots) are a *loss* system: a call
  that finds every channel busy does not wait, it is refused (the trunk gives busy; a full bot
  sends the call straight to the human route). Erlang B gives the share refused.
- **Decoding** (the ASR pool's threads, one per core) is a *delay* system: an utterance that finds
  every thread busy waits in the queue, and the caller hears silence, then "Et øjeblik".
  Erlang C gives the chance of waiting and how long. It assumes Poisson arrivals and exponential
  service times (M/M/c), which is rough for decodes of 0.3-1.5 s, so use it to compare designs,
  and the load benchmark (``voicebot bench calls``) to decide.

Traffic is in Erlangs: calls (or utterances) per hour x mean holding time in hours, i.e. the
mean number busy at once.

Run ``python -m voicebot.bench.erlang --calls-per-hour 580 --holding-s 40`` (or ``--erlangs A``)
for the channels needed at 1 % blocking and a short table around it.
"""

from __future__ import annotations

import argparse
import math


def offered_erlangs(calls_per_hour: float, holding_s: float) -> float:
    """Offered traffic: calls per hour x mean holding time (seconds) / 3600."""
    return calls_per_hour * holding_s / 3600.0


def erlang_b(erlangs: float, channels: int) -> float:
    """Blocking probability of ``channels`` lines offered ``erlangs`` (blocked calls cleared).

    The stable recursion B(0) = 1, B(k) = A*B(k-1) / (k + A*B(k-1)); no factorials, so it works
    for thousands of channels."""
    if erlangs < 0 or channels < 0:
        raise ValueError("traffic and channels must be non-negative")
    b = 1.0
    for k in range(1, channels + 1):
        b = erlangs * b / (k + erlangs * b)
    return b


def channels_for_blocking(erlangs: float, blocking: float = 0.01) -> int:
    """The fewest channels whose Erlang B blocking is at most ``blocking``."""
    if not 0 < blocking < 1:
        raise ValueError("blocking must be between 0 and 1")
    b, n = 1.0, 0
    while b > blocking:
        n += 1
        b = erlangs * b / (n + erlangs * b)
    return n


def erlang_c(erlangs: float, servers: int) -> float:
    """Probability that an arrival has to wait, with ``servers`` servers offered ``erlangs``
    (queue unbounded; 1.0 when the servers cannot keep up, A >= N)."""
    if servers <= 0 or erlangs >= servers:
        return 1.0
    b = erlang_b(erlangs, servers)
    rho = erlangs / servers
    return b / (1.0 - rho * (1.0 - b))


def mean_wait(erlangs: float, servers: int, service_s: float) -> float:
    """Mean wait in the queue over all arrivals (seconds); infinite when A >= N."""
    if erlangs >= servers:
        return math.inf
    return erlang_c(erlangs, servers) * service_s / (servers - erlangs)


def wait_exceeds(erlangs: float, servers: int, service_s: float, t: float) -> float:
    """P(wait in queue > ``t`` seconds) for M/M/c: C(A, N) * exp(-(N - A) * t / service_s)."""
    if erlangs >= servers:
        return 1.0
    return erlang_c(erlangs, servers) * math.exp(-(servers - erlangs) * t / service_s)


def servers_for_wait(erlangs: float, service_s: float, t: float, p: float) -> int:
    """The fewest servers such that at most a share ``p`` of arrivals waits longer than ``t``."""
    n = max(1, math.floor(erlangs) + 1)
    while wait_exceeds(erlangs, n, service_s, t) > p:
        n += 1
    return n


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m voicebot.bench.erlang", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--erlangs", type=float, help="offered traffic in Erlangs")
    group.add_argument("--calls-per-hour", type=float, help="calls in the busiest hour (with --holding-s)")
    parser.add_argument("--holding-s", type=float, default=180.0, help="mean holding time per call, seconds")
    parser.add_argument("--blocking", type=float, default=0.01, help="target blocking (Erlang B), default 0.01")
    args = parser.parse_args(argv)
    a = args.erlangs if args.erlangs is not None else offered_erlangs(args.calls_per_hour, args.holding_s)
    n = channels_for_blocking(a, args.blocking)
    print(f"offered traffic {a:.2f} Erlang; {n} channels give blocking <= {args.blocking:g}")
    for k in range(max(1, n - 3), n + 4):
        print(f"  {k:4d} channels: blocking {erlang_b(a, k):.4f}")


if __name__ == "__main__":
    _main()
