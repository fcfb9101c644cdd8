"""Decoding threads run nicer than the event loop (speech/asr/priority.py)."""

import os
import threading

import pytest

from voicebot.speech.asr.pool import get_pool
from voicebot.speech.asr.priority import lower_this_thread, run_lowered

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="needs os.getpriority (POSIX)")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_run_lowered_lowers_the_threads_the_function_starts_and_not_the_caller():
    caller = nice_of(threading.get_native_id())
    seen: dict[str, int] = {}

    def load():  # like a model load: starts a worker thread of its own
        seen["loader"] = nice_of(threading.get_native_id())
        worker = threading.Thread(target=lambda: seen.__setitem__("worker", nice_of(threading.get_native_id())))
        worker.start()
        worker.join()
        return "model"

    assert run_lowered(5, load) == "model"
    expected = min(19, caller + 5)
    assert seen == {"loader": expected, "worker": expected}
    assert nice_of(threading.get_native_id()) == caller


def test_run_lowered_re_raises_in_the_caller():
    def broken():
        raise ValueError("no model")

    with pytest.raises(ValueError, match="no model"):
        run_lowered(3, broken)


def test_zero_steps_changes_nothing():
    caller = nice_of(threading.get_native_id())
    assert run_lowered(0, lambda: nice_of(threading.get_native_id())) == caller


def test_lowering_never_passes_19():
    def body():
        return lower_this_thread(50)

    assert run_lowered(1, body) == 19


def test_the_decoding_pool_threads_are_lowered(monkeypatch):
    import voicebot.speech.asr.pool as pool_module

    monkeypatch.setattr(pool_module, "_pool", None)
    pool = get_pool(1, 7)
    try:
        caller = nice_of(threading.get_native_id())
        assert pool.submit(lambda: nice_of(threading.get_native_id())).result() == min(19, caller + 7)
    finally:
        pool.shutdown()
