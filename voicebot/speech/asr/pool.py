"""The bounded decoding pool: ASR runs in these threads, never on the event loop.

One pool per process, sized to the CPU cores (``speech.asr.workers``). CTranslate2 and Kaldi
release the GIL while decoding, so threads use the cores; more threads than cores would only
make every caller wait longer. ``in_flight()`` (jobs running or queued) tells an engine whether
other callers wait for the same cores (whisper.py decodes faster then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from voicebot.speech.asr.priority import lower_this_thread

T = TypeVar("T")

_lock = threading.Lock()


class CountingPool(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that knows how many jobs are running or waiting."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        self.in_flight = 0
        self._idle_since = float("-inf")  # when in_flight last fell to 0
        self.idle_gap_s = math.inf         # how long the pool was empty before its current run of jobs

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        with self._count_lock:
            if self.in_flight == 0:
                self.idle_gap_s = time.monotonic() - self._idle_since
            self.in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)  # also when cancelled while queued
        return future

    def _finished(self, _future) -> None:
        with self._count_lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle_since = time.monotonic()


_pool: CountingPool | None = None


def get_pool(workers: int, nice: int = 0) -> CountingPool:
    """The process-wide pool (created on first use with ``workers`` threads, each ``nice`` steps
    nicer than the event loop: priority.py)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = CountingPool(max_workers=max(1, workers), thread_name_prefix="asr",
                                 initializer=lower_this_thread, initargs=(nice,))
        return _pool


def in_flight() -> int:
    """Decoding jobs running or queued in this process's pool (the caller's own included)."""
    return _pool.in_flight if _pool is not None else 0


def idle_gap_s() -> float:
    """How long the pool stood empty before the jobs now in it arrived (inf: never used): a lone
    decode after a long gap has the machine to itself (whisper.py's solo decode)."""
    return _pool.idle_gap_s if _pool is not None else math.inf


async def run_in_pool(pool: concurrent.futures.Executor, fn: Callable[..., T], *args) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
