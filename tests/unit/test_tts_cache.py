"""The TTS disk cache: keys, hits and misses, resampling, atomic and self-healing files."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voicebot.speech.audio import read_wav
from voicebot.speech.tts.base import Synthesized
from voicebot.speech.tts.cache import TTSCache, normalize_text
from voicebot.speech.tts.fake import FakeConfig, FakeTTS


@pytest.fixture
def cache(tmp_path):
    return TTSCache(FakeTTS(), tmp_path, 8000)


def test_key_changes_with_text_voice_and_rate(tmp_path):
    base = TTSCache(FakeTTS(FakeConfig("a")), tmp_path, 8000)
    assert base.key("Hej") != base.key("Farvel")
    assert base.key("Hej") != TTSCache(FakeTTS(FakeConfig("b")), tmp_path, 8000).key("Hej")
    assert base.key("Hej") != TTSCache(FakeTTS(FakeConfig("a")), tmp_path, 16000).key("Hej")


def test_key_ignores_whitespace_and_unicode_form(cache):
    assert cache.key("Hej  med\n dig ") == cache.key("Hej med dig")
    decomposed = "Ka\u030aret"  # å as a + combining ring
    assert cache.key(decomposed) == cache.key("Kåret")
    assert normalize_text("  a \t b ") == "a b"


def test_key_differs_between_engines(tmp_path):
    class Other(FakeTTS):
        name = "other"

        def cache_key_parts(self) -> dict:
            return {"engine": self.name, "voice": self.config.voice}

    assert TTSCache(FakeTTS(), tmp_path, 8000).key("x") != TTSCache(Other(), tmp_path, 8000).key("x")


def test_miss_then_hit(cache):
    first = cache.get("Hej med dig")
    assert (cache.hits, cache.misses) == (0, 1)
    second = cache.get("Hej   med dig")
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.engine.calls == ["Hej med dig"]  # synthesized once, with normalized text
    np.testing.assert_array_equal(first, second)


def test_audio_is_resampled_to_the_cache_rate(cache):
    samples = cache.get("abcd")  # 0.2 s at 22050 Hz
    assert samples.dtype == np.int16
    assert len(samples) == pytest.approx(0.2 * 8000, abs=2)
    on_disk, rate = read_wav(cache.path("abcd"))
    assert rate == 8000 and len(on_disk) == len(samples)


async def test_aget_runs_off_the_loop(cache):
    samples = await cache.aget("Hej")
    assert len(samples) > 0 and cache.misses == 1
    assert cache.has("Hej")


def test_has_does_not_synthesize(cache):
    assert not cache.has("Hej")
    assert cache.engine.calls == []


def test_writes_leave_no_temporary_files(cache, tmp_path):
    for text in ("en", "to", "tre"):
        cache.get(text)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3 and all(p.suffix == ".wav" for p in files)


def test_failed_write_leaves_no_partial_file(cache, tmp_path, monkeypatch):
    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom()

    monkeypatch.setattr("voicebot.speech.tts.cache.os.replace", explode)
    with pytest.raises(Boom):
        cache.get("Hej")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_corrupt_file_is_a_miss_and_is_replaced(cache):
    path = cache.path("Hej")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF\x00\x00")  # a truncated file from an old crash
    samples = cache.get("Hej")
    assert cache.misses == 1 and len(samples) > 0
    assert read_wav(path)[1] == 8000


def test_store_writes_every_rate_from_one_synthesis(tmp_path):
    engine = FakeTTS()
    synth = engine.synthesize("Hej")
    for rate in (8000, 16000):
        c = TTSCache(engine, tmp_path, rate)
        c.store("Hej", synth)
        assert len(c.get("Hej")) == pytest.approx(synth.seconds * rate, abs=2)
    assert engine.calls == ["Hej"]


def test_concurrent_misses_give_whole_files(cache):
    results = []

    def worker():
        results.append(cache.get("Samme tekst fra mange opkald"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, results[0]) for r in results)
    assert len(read_wav(cache.path("Samme tekst fra mange opkald"))[0]) == len(results[0])


def test_empty_synthesis_is_cached(tmp_path):
    class Silent(FakeTTS):
        def synthesize(self, text: str) -> Synthesized:
            return Synthesized(np.zeros(0, dtype=np.int16), 22050)

    c = TTSCache(Silent(), tmp_path, 8000)
    assert len(c.get(".")) == 0
    assert c.has(".")
