"""ASR engines on real models: Whisper on real Danish speech, Vosk streaming on the Korean test model.

Accuracy is measured on real read Danish (``<repo>/../shared/testdata/nst-da``, 28 clips, CC0);
the model is loaded once per session to keep CI time modest.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from voicebot.config import load_settings
from voicebot.speech.endpointer import UtteranceEnded

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NST = REPO.parent / "shared" / "testdata" / "nst-da"


def ensure_model(name: str) -> None:
    from voicebot.models import install, load_manifest

    install(load_manifest()[name], progress=False)  # a no-op when installed (make setup did it)


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture(scope="session")
def whisper(settings):
    ensure_model("whisper-base-da")  # the default; built from whisper-base
    from voicebot.speech.asr import load_engine

    return load_engine(settings, engine="whisper")


@pytest.fixture(scope="session")
def nst_set() -> Path:
    path = NST / "set.yaml"
    if not path.exists():
        pytest.skip(f"real Danish test clips not found at {NST} (CI keeps them in ../shared/testdata)")
    return path


def test_whisper_wer_on_real_danish_telephone(settings, whisper, nst_set):
    from voicebot.commands.eval_asr import evaluate, load_set, summary

    items = evaluate(settings, load_set(nst_set), telephone=True, engine="whisper", progress=False)
    total = summary(items, "whisper", True)
    print(total)
    assert total["items"] == 28
    assert total["wer"] <= 0.60, total
    assert total["rtf"] < 1.0, total


def test_whisper_says_nothing_on_silence_and_noise(whisper):
    rng = np.random.default_rng(3)
    silence = np.zeros(8000 * 3, dtype=np.int16)
    hiss = (rng.standard_normal(8000 * 3) * 200).astype(np.int16)
    assert whisper.transcribe(silence, 8000).text == ""
    result = whisper.transcribe(hiss, 8000)
    assert len(result.text.split()) <= 2, result


async def test_listener_with_whisper_on_a_phone_line(settings, whisper, nst_set):
    from voicebot.speech.asr import create_listener
    from voicebot.speech.audio import read_wav
    from voicebot.speech.telephone import phone_line
    from voicebot.speech.wer import wer

    samples, rate = phone_line(*read_wav(NST / "nst-da-22.wav"))
    audio = np.concatenate([np.zeros(rate, np.int16), samples, np.zeros(2 * rate, np.int16)])
    listener = create_listener(settings, rate=rate, engine="whisper")
    texts = []
    for i in range(0, len(audio) - 160 + 1, 160):
        for event in listener.push(audio[i:i + 160]):
            if isinstance(event, UtteranceEnded):
                texts.append((await listener.result()).text)
    reference = ("Tror du, at han kan flytte den store kasse og dunkene med vand ned i kælderen "
                 "uden at tabe det hele?")
    assert len(texts) == 1, texts  # one utterance, not cut in pieces by the endpointer
    assert wer(reference, texts[0]) <= 0.4, texts  # 0.14 when decoded whole


# -- Vosk ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def korean_speech():
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    from voicebot.speech.audio import resample
    from voicebot.speech.tts.espeak import EspeakConfig, EspeakTTS

    s = EspeakTTS(EspeakConfig(voice="ko")).synthesize("안녕하세요 만나서 반갑습니다 오늘 날씨가 좋네요")
    return resample(s.samples, s.rate, 16000)


@pytest.fixture(scope="session")
def vosk_settings(settings):
    ensure_model("vosk-ko-test")
    return settings


async def test_vosk_streaming_gives_partials_and_a_final(vosk_settings, korean_speech):
    from voicebot.speech.asr import create_recognizer

    rec = create_recognizer(vosk_settings, rate=16000, engine="vosk")
    assert rec.streaming
    partials = []
    for i in range(0, len(korean_speech), 320):
        rec.push(korean_speech[i:i + 320])
        await asyncio.sleep(0.01)
        if rec.partial and rec.partial not in partials:
            partials.append(rec.partial)
    for _ in range(200):  # decoding may lag behind on a busy machine: let it catch up
        if rec.partial:
            partials.append(rec.partial)
            break
        await asyncio.sleep(0.05)
    result = await rec.finish()
    assert partials, "no partial results while streaming"
    assert result.text and result.engine == "vosk" and 0 < result.confidence <= 1
    assert result.audio_s == pytest.approx(len(korean_speech) / 16000, abs=0.03)


async def test_vosk_grammar_restricts_output(vosk_settings, korean_speech):
    from voicebot.speech.asr import load_engine
    from voicebot.speech.asr.vosk import VoskConfig, VoskEngine

    base = load_engine(vosk_settings, engine="vosk")
    phrases = ["안녕하세요", "날씨"]
    engine = VoskEngine(VoskConfig(model=str(base.config.model), grammar=True), phrases)
    result = engine.transcribe(korean_speech, 16000)
    assert set(result.text.split()) <= {"안녕하세요", "날씨"}, result


def test_vosk_accepts_8khz(vosk_settings, korean_speech):
    from voicebot.speech.asr import load_engine
    from voicebot.speech.telephone import phone_line

    result = load_engine(vosk_settings, engine="vosk").transcribe(*phone_line(korean_speech, 16000))
    assert result.text


async def test_concurrent_transcriptions_share_the_model(settings, whisper, nst_set, monkeypatch):
    from voicebot.speech.asr import transcribe
    from voicebot.speech.audio import read_wav

    # the same settings busy or not: only the sharing is under test here
    monkeypatch.setattr(whisper.config, "beam_size_busy", whisper.config.beam_size)
    monkeypatch.setattr(whisper.config, "window_pad_s_busy", whisper.config.window_pad_s)
    clips = [read_wav(NST / f"nst-da-{n}.wav") for n in ("01", "22")]
    alone = [whisper.transcribe(s, r).text for s, r in clips]
    together = await asyncio.gather(*(transcribe(settings, s, r, engine="whisper") for s, r in clips))
    assert [r.text for r in together] == alone


async def test_a_decode_that_starts_while_others_wait_uses_the_busy_settings(settings, whisper, nst_set,
                                                                            monkeypatch):
    """Peak load: the pool has other work, so the decode runs with beam_size_busy and
    window_pad_s_busy (whisper.py). Compared with the same clips decoded alone either way."""
    import threading

    from voicebot.speech.asr import _pool, transcribe
    from voicebot.speech.audio import read_wav

    pool = _pool(settings)
    if pool._max_workers < 2:
        pytest.skip("needs 2 decoding threads (speech.asr.workers) to hold one busy")
    c = whisper.config
    clips = [read_wav(NST / f"nst-da-{n}.wav") for n in ("01", "05", "09", "13", "22")]
    full = [whisper.transcribe(s, r).text for s, r in clips]  # outside the pool: not busy
    with monkeypatch.context() as m:
        m.setattr(c, "beam_size", c.beam_size_busy)
        m.setattr(c, "window_pad_s", c.window_pad_s_busy)
        cheap = [whisper.transcribe(s, r).text for s, r in clips]
    differ = [i for i, (a, b) in enumerate(zip(full, cheap)) if a != b]
    assert differ, "the busy settings decode these clips like the full ones: pick other clips"
    release = threading.Event()
    blocker = pool.submit(release.wait, 60)  # another caller's decode holds one thread
    try:
        busy = [(await transcribe(settings, *clips[i], engine="whisper")).text for i in differ]
    finally:
        release.set()
        blocker.result(10)
    assert busy == [cheap[i] for i in differ]
    monkeypatch.setattr(c, "busy_within_s", 0.3)
    await asyncio.sleep(0.4)
    alone = (await transcribe(settings, *clips[differ[0]], engine="whisper")).text
    assert alone == full[differ[0]]  # the pool stood empty for busy_within_s: the full settings again


def test_models_install_defaults_is_fast_when_installed(capsys):
    import time

    from voicebot.cli import main

    assert main(["models", "install", "--defaults"]) == 0
    t0 = time.monotonic()
    assert main(["models", "install", "--defaults"]) == 0
    assert time.monotonic() - t0 < 3.0
    out = capsys.readouterr().out
    assert "whisper-base: already installed" in out and "e5-small: already installed" in out
