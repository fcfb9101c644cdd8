"""The bounded decoding pool: ASR runs in these threads, never on the event loop.

One pool per process, sized to the CPU cores (``speech.asr.workers``). CTranslate2 and Kaldi
release the GIL while decoding, so threads use the cores; more threads than cores would only
make every caller wait longer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from voicebot.speech.asr.priority import lower_this_thread

T = TypeVar("T")

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def get_pool(workers: int, nice: int = 0) -> concurrent.futures.ThreadPoolExecutor:
    """The process-wide pool (created on first use with ``workers`` threads, each ``nice`` steps
    nicer than the event loop: priority.py)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers),
                                                          thread_name_prefix="asr",
                                                          initializer=lower_this_thread, initargs=(nice,))
        return _pool


async def run_in_pool(pool: concurrent.futures.Executor, fn: Callable[..., T], *args) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
