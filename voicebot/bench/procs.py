"""What the load costs: CPU, memory, file descriptors and threads of the bot, Asterisk and the
benchmark itself, sampled from /proc while the calls run, plus the bot's own /healthz (live calls,
utterances waiting for ASR) and the benchmark's event-loop lag."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_s: float  # user + system since the process started
    rss_kb: int
    threads: int
    fds: int | None


def read_proc(pid: int, proc: Path = Path("/proc")) -> ProcSample | None:
    """One sample of ``pid``, None when it is gone (or this is not Linux)."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_text()
        status = (base / "status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    threads = int(fields[17])
    rss_kb = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    try:
        fds: int | None = len(os.listdir(base / "fd"))
    except OSError:
        fds = None
    return ProcSample(time.monotonic(), cpu_s, rss_kb, threads, fds)


def read_machine(stat: Path = Path("/proc/stat")) -> tuple[float, float] | None:
    """CPU seconds all cores have been busy since boot, and how many of them went to interrupt
    work (the kernel's share of loopback RTP, not billed to any process); None when unknown."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS, (ticks[5] + ticks[6]) / CLOCK_TICKS


def pid_from(path: Path, expect: str) -> int | None:
    """The PID in ``path`` when that process is alive and its command line mentions ``expect``."""
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if expect.encode() in cmdline else None


def usage(samples: list[ProcSample]) -> dict:
    """CPU (% of one core: 200 = both cores of this machine) over the samples, its busiest
    interval, and the peaks of RSS, fds and threads."""
    if not samples:
        return {"cpu_percent": None}
    first, last = samples[0], samples[-1]
    span = last.at - first.at
    peaks = [(b.cpu_s - a.cpu_s) / (b.at - a.at) for a, b in zip(samples, samples[1:]) if b.at > a.at]
    fds = [s.fds for s in samples if s.fds is not None]
    return {"cpu_percent": round(100 * (last.cpu_s - first.cpu_s) / span, 1) if span > 0 else None,
            "cpu_percent_peak": round(100 * max(peaks), 1) if peaks else None,
            "rss_mb": round(max(s.rss_kb for s in samples) / 1024, 1),
            "rss_mb_last": round(last.rss_kb / 1024, 1),
            "fds": max(fds) if fds else None, "fds_last": fds[-1] if fds else None,
            "threads": max(s.threads for s in samples)}


def get_health(url: str, timeout: float = 1.0) -> dict:
    """The bot's /healthz, {} when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except (OSError, ValueError):
        return {}


@dataclass
class ProcWatch:
    """Samples the named processes every ``interval`` seconds until cancelled."""

    pids: dict[str, int | None]
    health_url: str | None = None
    interval: float = 1.0
    samples: dict[str, list[ProcSample]] = field(default_factory=dict)
    health: list[tuple[float, dict]] = field(default_factory=list)
    lag_ms: list[tuple[float, float]] = field(default_factory=list)  # (at, how late a 50 ms tick woke)
    machine: list[tuple[float, tuple[float, float]]] = field(default_factory=list)  # (at, read_machine())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._lag())
            while True:
                for name, pid in self.pids.items():
                    sample = read_proc(pid) if pid else None
                    if sample is not None:
                        self.samples.setdefault(name, []).append(sample)
                busy = read_machine()
                if busy is not None:
                    self.machine.append((time.monotonic(), busy))
                if self.health_url:
                    self.health.append((time.monotonic(), await asyncio.to_thread(get_health, self.health_url)))
                await asyncio.sleep(self.interval)

    async def _lag(self) -> None:
        tick = 0.05
        while True:
            due = time.monotonic() + tick
            await asyncio.sleep(tick)
            self.lag_ms.append((due, (time.monotonic() - due) * 1000))

    def _machine(self, since: float, until: float, out: dict) -> dict:
        """The whole machine's CPU, its interrupt work, and what other processes used: a
        benchmark that shares the machine with other work says so."""
        busy = [(at, s) for at, s in self.machine if since <= at <= until]
        if len(busy) < 2 or busy[-1][0] <= busy[0][0]:
            return {"machine_cpu_percent": None, "irq_cpu_percent": None, "other_cpu_percent": None}
        (t0, (busy0, irq0)), (t1, (busy1, irq1)) = busy[0], busy[-1]
        machine, irq = 100 * (busy1 - busy0) / (t1 - t0), 100 * (irq1 - irq0) / (t1 - t0)
        ours = sum(out.get(f"{name}_cpu_percent") or 0.0 for name in self.pids)
        return {"machine_cpu_percent": round(machine, 1), "irq_cpu_percent": round(irq, 1),
                "other_cpu_percent": round(max(0.0, machine - irq - ours), 1)}

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict:
        """The processes' part of the JSON for samples taken in [since, until]."""
        out: dict = {}
        for name, samples in self.samples.items():
            for key, value in usage([s for s in samples if since <= s.at <= until]).items():
                out[f"{name}_{key}"] = value
        out.update(self._machine(since, until, out))
        health = [h for at, h in self.health if since <= at <= until and h]
        out["bot_calls_max"] = max((h.get("calls", 0) for h in health), default=None)
        out["pending_decodes_max"] = max((h.get("pending_decodes", 0) for h in health), default=None)
        # how far behind schedule the bot's media clock sent a frame (its own measure: a gap at the
        # caller with a small value here was made after the bot, in Asterisk or the network)
        out["media_late_ms_max"] = max((h.get("media_late_ms_max", 0.0) for h in health), default=None)
        out["bot_tasks_last"] = health[-1].get("tasks") if health else None
        # speculative decodes over the window: used, wasted (ran, then the caller went on), skipped
        spec = [h["speculations"] for h in health if "speculations" in h]
        out["speculations"] = ({k: spec[-1][k] - spec[0].get(k, 0) for k in spec[-1]}
                               if len(spec) >= 2 else None)
        lag = [ms for at, ms in self.lag_ms if since <= at <= until]
        out["bench_loop_lag_ms_max"] = round(max(lag), 1) if lag else None
        return out
