"""Which event loop a long-running command runs on.

uvloop where it is installed: with 20 calls the event loop's own work (RTP datagrams every 20 ms
per call, WebSocket events) costs ~12 points less of the bot's CPU than asyncio's default loop
(README "Load"), and the load benchmark's callers, on the same machine, take less CPU from the
bot they measure. VOICEBOT_LOOP=asyncio keeps the default loop, e.g. for asyncio's debug mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("voicebot.eventloop")
T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop unless VOICEBOT_LOOP=asyncio or uvloop is missing."""
    if os.environ.get("VOICEBOT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed: running on asyncio's default event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def loop_name() -> str:
    """"uvloop" or "asyncio": which event loop is running (``none`` outside one)."""
    try:
        return type(asyncio.get_running_loop()).__module__.split(".")[0]
    except RuntimeError:
        return "none"
