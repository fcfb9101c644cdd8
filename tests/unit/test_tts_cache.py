"""The TTS cache: keys, hits and misses, resampling, atomic and self-healing files; only known
(fixed) lines on disk, dynamic ones in a bounded memory LRU."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from voicebot.speech.audio import read_wav
from voicebot.speech.tts.base import Synthesized
from voicebot.speech.tts.cache import TTSCache, normalize_text
from voicebot.speech.tts.fake import FakeConfig, FakeTTS


#: the fixed lines these tests store on disk
KNOWN = ["Hej med dig", "abcd", "Hej", "en", "to", "tre", "Samme tekst fra mange opkald", "."]


@pytest.fixture
def cache(tmp_path):
    return TTSCache(FakeTTS(), tmp_path, 8000, known=KNOWN)


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
        c = TTSCache(engine, tmp_path, rate, known=["Hej"])
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

    c = TTSCache(Silent(), tmp_path, 8000, known=["."])
    assert len(c.get(".")) == 0
    assert c.has(".")


# ---- dynamic lines: memory only ------------------------------------------------------------------

CPR_LINE = "Jeg noterer dit cpr nummer 010190-1234, og du står som nummer 3 i køen"


def _all_bytes(directory) -> tuple[list[str], bytes]:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return [str(p.relative_to(directory)) for p in files], b"".join(p.read_bytes() for p in files)


def test_a_dynamic_line_never_reaches_the_disk(cache, tmp_path):
    cache.get("Hej")  # a known line: on disk
    names_before, _ = _all_bytes(tmp_path)
    samples = cache.get(CPR_LINE)
    assert len(samples) > 0 and cache.engine.calls[-1] == CPR_LINE
    names, contents = _all_bytes(tmp_path)
    assert names == names_before == [str(cache.path("Hej").relative_to(tmp_path))]
    assert not cache.has(CPR_LINE)
    for form in ("0101901234", "010190-1234", "010190"):
        assert form not in "".join(names) and form.encode() not in contents


def test_a_dynamic_line_is_served_from_memory_the_second_time(cache):
    first = cache.get(CPR_LINE)
    second = cache.get(CPR_LINE)
    assert cache.engine.calls == [CPR_LINE] and (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(first, second)
    assert not second.flags.writeable  # shared between calls: nobody may change it


def test_the_memory_cache_is_bounded_lru(tmp_path):
    engine = FakeTTS()
    c = TTSCache(engine, tmp_path, 8000, memory_items=2)
    c.get("kø 1")
    c.get("kø 2")
    c.get("kø 1")  # touch: kø 2 is now the oldest
    c.get("kø 3")  # evicts kø 2
    assert len(c._memory) == 2
    c.get("kø 1")
    assert engine.calls == ["kø 1", "kø 2", "kø 3"]
    c.get("kø 2")
    assert engine.calls[-1] == "kø 2" and list(tmp_path.rglob("*")) == []


def test_declared_lines_are_known_in_any_spacing(tmp_path):
    c = TTSCache(FakeTTS(), tmp_path, 8000)
    assert not c.is_known("Velkommen til")
    c.declare_known(["Velkommen  til"])
    assert c.is_known(" Velkommen til ")
    c.get("Velkommen til")
    assert c.has("Velkommen til")
