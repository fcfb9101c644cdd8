"""numpy's BLAS runs in the calling thread: its own worker threads must not spin on the cores
the decoders need.

numpy's OpenBLAS starts a worker thread per core when numpy is imported. After each BLAS call
(faster-whisper's mel filterbank product, once a decode) that worker busy-waits for more work
before it sleeps, and it was started by the main thread, so it runs at the event loop's priority,
above the lowered decoding threads (priority.py). On 2 cores it took a core from the decoders:
measured with two decodes at a time, whisper-base's encoder went from 136 to 191 ms a decode, and a
2-thread decode gained nothing from its second thread (encoder 176 ms against 78 ms without the
spinning worker). The products numpy does here are small, so one thread costs them nothing.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger("voicebot.asr")


@functools.cache  # once per process: load_engine calls it for every recognizer
def single_threaded_blas() -> None:
    """Limit numpy's BLAS to the calling thread (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except Exception as exc:  # a missing or unknown BLAS only costs speed
        log.warning("cannot limit numpy's BLAS threads: %s", exc)
