"""Decoding yields the CPU to the event loop.

The one asyncio thread paces every call's RTP every 20 ms; Whisper's decode threads are busy for
hundreds of milliseconds at a time. On a loaded machine with equal priority the loop waits for a
core behind them and the callers hear gaps (measured: 137 ms of every second runnable-but-waiting
at 20 calls on 2 cores). So the decoding threads run ``nice`` steps nicer than the rest of the
process: the kernel lets the loop run the moment it wakes, and decoding gets everything else.

Linux sets the nice value per thread (``setpriority`` on a thread id), and a new thread inherits
its creator's value: so the model is loaded in a lowered thread, and the native worker threads
CTranslate2 starts at load time are lowered with it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("voicebot.asr")

T = TypeVar("T")
MAX_NICE = 19


def lower_this_thread(steps: int) -> int:
    """Make the calling thread ``steps`` nicer (never less nice: that needs privileges). Returns
    its nice value afterwards; on a system without per-thread priorities, logs and carries on."""
    if steps <= 0:
        return _nice()
    try:
        tid = threading.get_native_id()
        target = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + steps)
        os.setpriority(os.PRIO_PROCESS, tid, target)
        return target
    except (OSError, AttributeError) as exc:
        log.warning("cannot lower the decoding threads' priority; decoding competes with the "
                    "event loop", extra={"error": str(exc)})
        return _nice()


def run_lowered(steps: int, fn: Callable[..., T], *args) -> T:
    """``fn(*args)`` in a thread ``steps`` nicer, so every thread ``fn`` starts is nicer too."""
    if steps <= 0:
        return fn(*args)
    out: dict[str, object] = {}

    def body() -> None:
        lower_this_thread(steps)
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=body, name="asr-load")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]


def _nice() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except (OSError, AttributeError):
        return 0
