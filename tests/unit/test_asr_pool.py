"""The decoding pool counts its jobs, and Whisper decodes cheaper while others wait."""

import threading

import pytest

from voicebot.speech.asr.pool import CountingPool
from voicebot.speech.asr.whisper import WhisperConfig, WhisperEngine


def test_the_pool_counts_running_and_queued_jobs_and_forgets_cancelled_ones():
    pool = CountingPool(max_workers=1)
    release = threading.Event()
    try:
        running = pool.submit(release.wait, 5)
        queued = [pool.submit(lambda: None) for _ in range(3)]
        assert pool.in_flight == 4
        assert queued[0].cancel()  # a speculation dropped before it started
        assert pool.in_flight == 3
        release.set()
        running.result(5)
        for f in queued[1:]:
            f.result(5)
        assert pool.in_flight == 0
    finally:
        release.set()
        pool.shutdown()


def test_busy_decodes_use_the_cheaper_settings():
    engine = WhisperEngine.__new__(WhisperEngine)  # settings() only: no model needed
    engine.config = WhisperConfig(beam_size=5, window_pad_s=5.0, beam_size_busy=2, window_pad_s_busy=3.0)
    assert engine.settings(busy=False) == (5, 5.0)
    assert engine.settings(busy=True) == (2, 3.0)


@pytest.mark.parametrize("bad", [{"beam_size_busy": 0}, {"window_pad_s_busy": -1.0}])
def test_bad_busy_settings_are_refused(bad):
    with pytest.raises(ValueError, match="busy"):
        WhisperConfig(**bad).validate()
