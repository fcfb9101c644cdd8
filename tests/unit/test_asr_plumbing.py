"""ASR plumbing with fake engines: recognizer ordering and partials, listener routing, guards, WER."""

from __future__ import annotations

import asyncio
import concurrent.futures

import numpy as np
import pytest

from voicebot.speech.asr.base import AsrEngine, AsrResult, AsrStream, SegmentEngine
from voicebot.speech.asr.guards import collapse_repeats, compression_ratio, is_prompt_echo, limit_length
from voicebot.speech.asr.recognizer import Listener, Recognizer
from voicebot.speech.endpointer import Endpointer, UtteranceEnded
from voicebot.speech.vad import VadConfig
from voicebot.speech.wer import normalize, number_words, wer


class CountingStream(AsrStream):
    """A streaming fake: the 'text' is the list of first samples of each chunk it saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def accept(self, samples: np.ndarray) -> str:
        self.seen.extend(int(v) for v in samples[::320])
        return " ".join(map(str, self.seen))

    def finish(self) -> AsrResult:
        return AsrResult(" ".join(map(str, self.seen)), 1.0, len(self.seen) * 0.02, 0.0, "fake")


class StreamingFake(AsrEngine):
    name, streaming = "fake-stream", True

    def open_stream(self, rate: int) -> AsrStream:
        return CountingStream()


class SegmentFake(SegmentEngine):
    name = "fake-segment"

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        return f"{len(samples)} samples", 0.9


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(2) as p:
        yield p


def frame(value: int) -> np.ndarray:
    return np.full(320, value, dtype=np.int16)


async def test_streaming_recognizer_keeps_order_and_partials(pool):
    rec = Recognizer(StreamingFake(None), pool, 16000)
    for i in range(1, 101):
        rec.push(frame(i))
        if i % 10 == 0:
            await asyncio.sleep(0.001)
    result = await rec.finish()
    assert result.text == " ".join(str(i) for i in range(1, 101))
    assert rec.partial == ""  # reset for the next utterance
    assert (await rec.finish()).text == ""


async def test_streaming_partial_follows_audio(pool):
    rec = Recognizer(StreamingFake(None), pool, 16000)
    rec.push(frame(7))
    for _ in range(100):
        if rec.partial:
            break
        await asyncio.sleep(0.005)
    assert rec.partial == "7"


async def test_segment_recognizer_decodes_in_pool(pool):
    rec = Recognizer(SegmentFake(None), pool, 16000)
    rec.push(frame(1))
    rec.push(frame(2))
    result = await rec.finish()
    assert result.text == "640 samples" and result.confidence == 0.9 and result.audio_s == 0.04


class ScriptedVad:
    def is_speech(self, f: np.ndarray) -> bool:
        return bool(f[0] != 0)


def speech_pattern() -> list[np.ndarray]:
    return [frame(0)] * 20 + [frame(i) for i in range(1, 31)] + [frame(0)] * 40


@pytest.mark.parametrize("engine", [StreamingFake(None), SegmentFake(None)])
async def test_listener_routes_audio_for_both_kinds(pool, engine):
    cfg = VadConfig(pre_roll_ms=100, end_silence_ms=400, tail_ms=100)
    listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, pool, 16000))
    ended = None
    for f in speech_pattern():
        for event in listener.push(f):
            if isinstance(event, UtteranceEnded):
                ended = event
                result = await listener.result()
    assert ended is not None
    if engine.streaming:
        words = result.text.split()
        lead = words.index("1")
        assert lead >= 5 and set(words[:lead]) == {"0"}  # the pre-roll was fed first
        assert words[lead:lead + 30] == [str(i) for i in range(1, 31)]  # no frame lost or doubled
        assert set(words[lead + 30:]) == {"0"}
    else:
        assert result.text == f"{len(ended.samples)} samples"


def test_guards():
    assert collapse_repeats("med til at med til at med til at med til at gå") == "med til at med til at gå"
    assert compression_ratio("ja " * 50) > 2.4 > compression_ratio("Jeg har mistet mit pas i går.")
    assert limit_length("ord " * 100, 1.0, 20.0).count("ord") <= 5
    assert is_prompt_echo("Borgerservice i Københavns Kommune", "Jeg ringer til Borgerservice i Københavns Kommune.")
    assert not is_prompt_echo("Jeg har mistet mit pas", "Jeg ringer til Borgerservice.")


def test_wer_normalizes_case_punctuation_numbers():
    assert number_words(21) == "enogtyve" and number_words(1990) == "tusind ni hundrede og halvfems"
    assert normalize("Tester 1, 2, 3!") == ["tester", "en", "to", "tre"]
    assert wer("tester en to tre", "Tester 1, 2, 3.") == 0.0
    assert wer("a b c d", "a x c") == 0.5


def test_speech_config_defaults_and_located_errors(tmp_path):
    from voicebot.config import load_settings
    from voicebot.errors import ConfigError
    from voicebot.speech.asr.config import AsrConfig
    from voicebot.speech.asr.vosk import VoskConfig
    from voicebot.speech.asr.whisper import WhisperConfig

    settings = load_settings()
    assert settings.section("speech.vad", VadConfig).end_silence_ms > 0
    asr = settings.section("speech.asr", AsrConfig)
    assert asr.engine == "whisper" and asr.worker_count >= 1
    whisper = settings.section("speech.asr.whisper", WhisperConfig)
    assert whisper.language == "da" and whisper.beam_size == 5
    assert settings.section("speech.asr.vosk", VoskConfig).model
    site = tmp_path / "site.yaml"
    site.write_text("speech:\n  vad:\n    start_frames: 9\n  asr:\n    engine: google\n")
    bad = load_settings(site)
    with pytest.raises(ConfigError, match=r"site.yaml:3: speech.vad.start_frames: must be between"):
        bad.section("speech.vad", VadConfig)
    with pytest.raises(ConfigError, match=r"site.yaml:5: speech.asr.engine: unknown engine 'google'"):
        bad.section("speech.asr", AsrConfig)


@pytest.mark.parametrize("engine", [StreamingFake(None), SegmentFake(None)])
async def test_listener_results_can_be_collected_later(pool, engine):
    cfg = VadConfig(pre_roll_ms=0, end_silence_ms=400, tail_ms=0)
    listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, pool, 16000))
    ended = 0
    for f in speech_pattern() + speech_pattern():  # two utterances, nothing awaited in between
        ended += sum(isinstance(e, UtteranceEnded) for e in listener.push(f))
    assert ended == 2
    first, second = await listener.result(), await listener.result()
    assert first.text == second.text
    if engine.streaming:
        words = first.text.split()
        assert [w for w in words if w != "0"] == [str(i) for i in range(1, 31)]
    else:
        assert first.text == f"{32 * 320} samples"  # onset window (2 silent + 30 voiced frames)
    with pytest.raises(RuntimeError):
        await listener.result()


class CountingSegment(SegmentEngine):
    """A segment engine that counts its decodes and takes ``delay`` seconds for each."""

    name = "counting-segment"

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(None)
        self.delay, self.decodes = delay, []

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        import time

        time.sleep(self.delay)
        self.decodes.append(len(samples))
        return f"{len(samples)} samples", 0.9


async def test_a_pause_starts_the_decode_and_the_end_of_turn_reuses_it(pool):
    """The decode starts at pause_ms of silence; when the turn ends without more speech, that
    decode is the result: one decode, and its time overlaps the end-of-turn wait."""
    from voicebot.speech.asr.recognizer import SPECULATIONS

    before = SPECULATIONS.as_dict()
    engine = CountingSegment(delay=0.2)
    cfg = VadConfig(pre_roll_ms=0, end_silence_ms=400, tail_ms=100, pause_ms=100)
    listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, pool, 16000))
    ended = None
    for f in [frame(i) for i in range(1, 31)] + [frame(0)] * 20:
        for event in listener.push(f):
            if isinstance(event, UtteranceEnded):
                ended = event
        await asyncio.sleep(0.02)  # real time: the 20 ms frames of a call
    assert ended is not None
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await listener.result()
    assert loop.time() - t0 < 0.1  # decoded during the wait, not after it
    assert listener.last_speculative and engine.decodes == [len(ended.samples)]
    assert result.text == f"{len(ended.samples)} samples"
    after = SPECULATIONS.as_dict()  # what /health and `bench calls` report
    assert {k: after[k] - before[k] for k in after} == {"started": 1, "used": 1, "wasted": 0, "skipped": 0}


async def test_a_turn_tells_its_decode_time_from_its_wait_for_a_thread():
    """On a one-thread pool: a speculation that finds the thread free reports (almost) no wait;
    one queued behind another caller's 0.3 s decode reports at least 0.3 s (``last_wait_ms``),
    and the result says how long the decode itself took (``decode_s``). The ear records both,
    so a slow turn explains itself."""
    import threading

    engine = CountingSegment(delay=0.1)
    cfg = VadConfig(pre_roll_ms=0, end_silence_ms=400, tail_ms=100, pause_ms=100)
    with concurrent.futures.ThreadPoolExecutor(1) as one:
        listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, one, 16000))
        release = threading.Event()
        for f in [frame(i) for i in range(1, 31)] + [frame(0)] * 7:  # speech, then the pause
            listener.push(f)
            await asyncio.sleep(0.02)
        assert listener._speculation is not None
        one.submit(release.wait, 5)  # another caller's decode: the speculation's job is already
        await asyncio.sleep(0.3)     # ahead of it, so it runs first...
        release.set()
        for f in [frame(0)] * 20:
            listener.push(f)
        result = await listener.result()
    assert listener.last_speculative and 0 <= listener.last_wait_ms < 250
    assert result.decode_s >= 0.1

    with concurrent.futures.ThreadPoolExecutor(1) as one:  # ...and here the thread is taken first
        listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, one, 16000))
        release = threading.Event()
        one.submit(release.wait, 5)
        for f in [frame(i) for i in range(1, 31)] + [frame(0)] * 7:
            listener.push(f)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        release.set()
        for f in [frame(0)] * 20:
            listener.push(f)
        await listener.result()
    assert listener.last_speculative and listener.last_wait_ms >= 300


async def test_speech_after_a_pause_drops_the_speculation(pool):
    from voicebot.speech.asr.recognizer import SPECULATIONS

    before = SPECULATIONS.as_dict()
    engine = CountingSegment()
    cfg = VadConfig(pre_roll_ms=0, end_silence_ms=400, tail_ms=100, pause_ms=100)
    listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(engine, pool, 16000))
    audio = [frame(i) for i in range(1, 21)] + [frame(0)] * 8 + [frame(i) for i in range(21, 41)] + [frame(0)] * 20
    ended = None
    for f in audio:
        for event in listener.push(f):
            if isinstance(event, UtteranceEnded):
                ended = event
        await asyncio.sleep(0.005)
    result = await listener.result()
    # the caller went on after the first pause: that decode (of the first part) is not the turn's
    # result; the second pause's decode, of the whole utterance, is
    assert result.text == f"{len(ended.samples)} samples" and listener.last_speculative
    assert len(ended.samples) >= 40 * 320
    assert all(n < len(ended.samples) for n in engine.decodes[:-1]) and engine.decodes[-1] == len(ended.samples)
    after = {k: v - before[k] for k, v in SPECULATIONS.as_dict().items()}
    # the first pause's decode ran (the engine is instant) and was thrown away
    assert after["used"] == 1 and after["wasted"] == len(engine.decodes) - 1 >= 1 and after["skipped"] == 0


class TextSegment(SegmentEngine):
    name = "text-segment"

    def __init__(self, text: str) -> None:
        super().__init__(None)
        self.text = text

    def decode(self, samples: np.ndarray, rate: int) -> tuple[str, float]:
        return self.text, 0.9


@pytest.mark.parametrize("text, complete", [("Jeg har mistet mit pas", True), ("ja", True),
                                            ("jeg har mistet mit pas og", False), ("øh", False), ("", False)])
def test_looks_complete(text, complete):
    from voicebot.speech.turn_end import looks_complete

    assert looks_complete(text) is complete


@pytest.mark.parametrize("text, early", [("Jeg har mistet mit pas", True), ("Jeg har mistet mit pas og", False)])
async def test_a_complete_speculative_transcript_ends_the_turn_early(pool, text, early):
    """With complete_end_ms 300 and end_silence_ms 600: a whole sentence ends the turn after
    ~300 ms of silence; one that trails off with "og" waits the full 600 ms."""
    from voicebot.dialogue.events import Utterance
    from voicebot.telephony.ear import Ear, VoiceConfig

    cfg = VadConfig(pre_roll_ms=0, end_silence_ms=600, tail_ms=100, pause_ms=100, complete_end_ms=300)
    listener = Listener(Endpointer(cfg, 16000, vad=ScriptedVad()), Recognizer(TextSegment(text), pool, 16000))
    ear = Ear(listener, VoiceConfig(), end_silence_ms=cfg.end_silence_ms)
    frames: asyncio.Queue = asyncio.Queue()
    running = asyncio.ensure_future(ear.run(frames))
    try:
        for f in [frame(i) for i in range(1, 31)] + [frame(0)] * 40:
            frames.put_nowait(f)
            await asyncio.sleep(0.02)
        event, timings = await asyncio.wait_for(ear.events.get(), 2)
    finally:
        running.cancel()
    assert isinstance(event, Utterance) and event.text == text and timings["speculative"] == 1
    assert timings["decode_ms"] >= 0 and timings["decode_wait_ms"] >= 0
    if early:
        assert 300 <= timings["eos_wait_ms"] < 600
    else:
        assert timings["eos_wait_ms"] == 600
