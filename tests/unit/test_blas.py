"""numpy's BLAS must run in the calling thread once an ASR engine is loaded (speech/asr/blas.py):
its spinning worker threads took a core from the decoders."""

import threadpoolctl  # a dependency (pyproject.toml): missing, the install is broken

from voicebot.speech.asr.blas import single_threaded_blas


def test_blas_is_limited_to_the_calling_thread():
    single_threaded_blas()
    single_threaded_blas()  # idempotent
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas, "numpy has no BLAS threadpool that threadpoolctl can see"
    assert all(p["num_threads"] == 1 for p in blas)
