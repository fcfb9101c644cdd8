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


@pytest.mark.parametrize("bad", [{"beam_size_busy": 0}, {"window_pad_s_busy": -1.0},
                                 {"busy_within_s": -1.0}])
def test_bad_busy_settings_are_refused(bad):
    with pytest.raises(ValueError, match="busy"):
        WhisperConfig(**bad).validate()


@pytest.mark.parametrize("jobs, idle_s, model, beam", [(1, 10.0, "solo", 5), (1, 2.5, "shared", 5),
                                                      (1, 0.5, "shared", 2), (2, 10.0, "shared", 2),
                                                      (3, 0.0, "shared", 2), (0, 0.0, "shared", 5)])
def test_a_decode_alone_in_a_quiet_pool_takes_the_solo_model(monkeypatch, jobs, idle_s, model, beam):
    """Alone in a pool that stood empty for solo_after_idle_s: the copy with more threads; among
    others, right after others (load), or called outside the pool (eval, tests): the one-thread
    model, so measured RTFs stay per core. The beam: full when the pool was quiet for
    busy_within_s, narrower among or right after others; outside the pool always the full
    settings."""
    import numpy as np

    from voicebot.speech.asr import whisper

    engine = WhisperEngine.__new__(WhisperEngine)
    engine.config = WhisperConfig(solo_after_idle_s=3.0, busy_within_s=1.0)
    engine.model, engine.solo_model = "shared", "solo"
    used = []
    monkeypatch.setattr(engine, "_decode", lambda m, audio, audio_s, b: used.append((m, b)) or ("", 0.0))
    monkeypatch.setattr(whisper, "in_flight", lambda: jobs)
    monkeypatch.setattr(whisper, "idle_gap_s", lambda: idle_s)
    engine.decode(np.zeros(8000, dtype=np.int16), 8000)
    assert used == [(model, beam)]


def test_solo_threads_must_not_be_negative():
    with pytest.raises(ValueError, match="solo_threads"):
        WhisperConfig(solo_threads=-1).validate()


def test_the_pool_knows_how_long_it_stood_empty_before_its_jobs():
    import time

    pool = CountingPool(max_workers=1)
    try:
        assert pool.idle_gap_s == float("inf")
        pool.submit(lambda: None).result(5)
        assert pool.idle_gap_s == float("inf")  # the first job: never used before
        time.sleep(0.3)
        release = threading.Event()
        first = pool.submit(release.wait, 5)
        assert 0.3 <= pool.idle_gap_s < 5
        gap = pool.idle_gap_s
        second = pool.submit(lambda: None)  # joins a running job: the gap stays the run's
        assert pool.idle_gap_s == gap
        release.set()
        first.result(5), second.result(5)
        time.sleep(0.05)  # the count drops in a done-callback, just after result() returns
        pool.submit(lambda: None).result(5)
        assert pool.idle_gap_s < 0.3  # right after the last run
    finally:
        pool.shutdown()
