"""SpeechOut: a recording wins over TTS, then the cache, then synthesis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from voicebot.speech.audio import write_wav
from voicebot.speech.tts.cache import TTSCache
from voicebot.speech.tts.fake import FakeTTS
from voicebot.speech.tts.speech_out import SpeechOut


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


@pytest.fixture
def engine():
    return FakeTTS()


@pytest.fixture
def speech(engine, tmp_path):
    return SpeechOut(TTSCache(engine, tmp_path / "cache", 16000),
                     prompts={"greeting": "Velkommen", "goodbye": "Farvel"})


async def test_recording_beats_tts(speech, engine, tmp_path):
    rec = tmp_path / "svar.wav"
    write_wav(rec, tone(1.0, 16000), 16000)
    samples = await speech.audio_for("Du kan bestille pas på borger.dk", rec)
    assert len(samples) == 16000
    assert engine.calls == [] and speech.cache.misses == 0


async def test_recording_is_resampled_to_the_call_rate(speech, tmp_path):
    rec = tmp_path / "svar8k.wav"
    write_wav(rec, tone(0.5, 8000), 8000)
    samples = await speech.audio_for("tekst", rec)
    assert len(samples) == pytest.approx(0.5 * 16000, abs=2)


async def test_missing_recording_falls_back_to_tts(speech, engine, tmp_path, caplog):
    samples = await speech.audio_for("Hej", tmp_path / "findes-ikke.wav")
    assert len(samples) > 0 and engine.calls == ["Hej"]
    assert "recording not playable" in caplog.text


async def test_garbage_recording_falls_back_to_tts(speech, engine, tmp_path):
    rec = tmp_path / "broken.wav"
    rec.write_bytes(b"not a wav at all")
    assert len(await speech.audio_for("Hej", rec)) > 0
    assert engine.calls == ["Hej"]


@pytest.mark.skipif(not shutil.which("sox"), reason="sox (Debian package) is not installed")
async def test_ulaw_recording_is_converted(speech, tmp_path):
    pcm = tmp_path / "pcm.wav"
    write_wav(pcm, tone(0.4, 8000), 8000)
    ulaw = tmp_path / "ulaw.wav"
    subprocess.run(["sox", str(pcm), "-e", "u-law", str(ulaw)], check=True)
    samples = await speech.audio_for("tekst", ulaw)
    assert len(samples) == pytest.approx(0.4 * 16000, abs=4)
    assert np.abs(samples).max() > 5000


async def test_relative_recording_resolves_against_the_base(engine, tmp_path):
    write_wav(tmp_path / "sounds" / "a.wav", tone(0.2, 16000), 16000)
    speech = SpeechOut(TTSCache(engine, tmp_path / "cache", 16000), resolve=lambda p: tmp_path / p)
    assert len(await speech.audio_for("x", Path("sounds/a.wav"))) == 3200
    assert engine.calls == []


async def test_recording_is_read_again_when_the_file_changes(speech, tmp_path):
    rec = tmp_path / "r.wav"
    write_wav(rec, tone(0.2, 16000), 16000)
    assert len(await speech.audio_for("x", rec)) == 3200
    write_wav(rec, tone(0.3, 16000), 16000)
    assert len(await speech.audio_for("x", rec)) == 4800


async def test_text_goes_through_the_cache(speech, engine):
    await speech.audio_for("Hej")
    await speech.audio_for("Hej")
    assert engine.calls == ["Hej"] and speech.cache.hits == 1


async def test_empty_text_without_recording_is_silence(speech, engine):
    assert len(await speech.audio_for("  ")) == 0
    assert engine.calls == []


async def test_prompt_by_name_with_its_recording(engine, tmp_path):
    rec = tmp_path / "greeting.wav"
    write_wav(rec, tone(0.25, 16000), 16000)
    speech = SpeechOut(TTSCache(engine, tmp_path / "c", 16000), {"greeting": "Velkommen", "goodbye": "Farvel"},
                       {"greeting": rec})
    assert len(await speech.prompt("greeting")) == 4000
    await speech.prompt("goodbye")
    assert engine.calls == ["Farvel"]
    with pytest.raises(KeyError, match="known: goodbye, greeting"):
        await speech.prompt("nope")


async def test_prompts_are_cached_on_disk_and_other_text_only_in_memory(speech, engine, tmp_path):
    await speech.prompt("greeting")
    await speech.audio_for("Farvel")  # a prompt's text, said by the dialogue
    await speech.audio_for("Du har cpr nummer 010190-1234 og er nummer 2 i køen")
    files = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert sorted(files) == sorted([speech.cache.path("Velkommen").name, speech.cache.path("Farvel").name])
    assert speech.cache.is_known("Velkommen") and not speech.cache.is_known("Du har cpr nummer 010190-1234")
