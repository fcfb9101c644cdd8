"""Speech in and out: audio helpers, VAD endpointing, ASR engines (``asr``), TTS engines (``tts``)."""

from __future__ import annotations

from pathlib import Path


def transcribe_file(settings, path: str | Path, *, telephone: bool = False,
                    engine: str | None = None) -> str:
    """Recognize a WAV file with the configured ASR engine (blocking; for evals and tools).

    ``telephone=True`` first squeezes the audio through an 8 kHz μ-law phone line.
    """
    from voicebot.speech.asr import load_engine
    from voicebot.speech.audio import read_wav
    from voicebot.speech.telephone import phone_line

    samples, rate = read_wav(path)
    if telephone:
        samples, rate = phone_line(samples, rate)
    return load_engine(settings, engine=engine).transcribe(samples, rate).text
