"""What the benchmark's callers say: real Danish speech (the nst-da clips beside the clone, or a
list of WAV files), and espeak-ng only when there is none (Whisper hardly understands it, so the
bot mostly asks to rephrase: the turns still count, and the JSON says which audio was used)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.config import PROJECT_ROOT
from voicebot.errors import VoicebotError
from voicebot.sip.caller import RATE
from voicebot.sip.measure import speech_end_ms
from voicebot.speech.audio import read_wav, resample

NST_DA = PROJECT_ROOT.parent / "shared" / "testdata" / "nst-da"  # 28 clips of read Danish, CC0
FALLBACK_SENTENCES = (
    "Hej, jeg har mistet mit pas, og jeg skal ud at rejse på mandag.",
    "Hvordan bestiller jeg et nyt sundhedskort?",
    "Jeg skal flytte i næste måned. Hvad skal jeg gøre?",
    "Hvornår har I åbent i dag?",
)


@dataclass(frozen=True)
class Utterance:
    name: str
    samples: np.ndarray  # 8 kHz int16
    speech_end_ms: float  # where the voice ends in the clip (trailing silence follows)


@dataclass(frozen=True)
class Utterances:
    source: str  # "nst-da", "file:<path>" or "espeak-ng" (for the JSON)
    clips: list[Utterance]

    def pick(self, call: int, turn: int, turns: int) -> Utterance:
        """Round robin over the clips, so concurrent calls say different things."""
        return self.clips[(call * turns + turn) % len(self.clips)]


def read_list(path: Path) -> list[Path]:
    """A text file with one WAV path a line (relative to the file; ``#`` comments, blank lines)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VoicebotError(f"--utterances {path}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        wav = (path.parent / Path(line).expanduser()).resolve()
        if not wav.is_file():
            raise VoicebotError(f"{path}:{number}: no such WAV file: {wav}")
        out.append(wav)
    if not out:
        raise VoicebotError(f"--utterances {path}: lists no WAV files")
    return out


def load(listing: Path | None = None, nst_da: Path = NST_DA) -> Utterances:
    """The listed WAVs; else the nst-da clips; else espeak-ng sentences."""
    if listing is not None:
        return Utterances(f"file:{listing}", [_clip(p) for p in read_list(listing)])
    wavs = sorted(nst_da.glob("*.wav")) if nst_da.is_dir() else []
    if wavs:
        return Utterances("nst-da", [_clip(p) for p in wavs])
    return Utterances("espeak-ng", [_spoken(i, text) for i, text in enumerate(FALLBACK_SENTENCES)])


def _clip(path: Path) -> Utterance:
    try:
        samples, rate = read_wav(path)
    except (OSError, ValueError, EOFError) as exc:
        raise VoicebotError(f"cannot read {path}: {exc}") from None
    return _utterance(path.name, resample(samples, rate, RATE))


def _spoken(index: int, text: str) -> Utterance:
    from voicebot.sip.script import espeak_tts

    return _utterance(f"espeak-{index + 1}", espeak_tts(text))


def _utterance(name: str, samples: np.ndarray) -> Utterance:
    end = speech_end_ms(samples, RATE)
    if end <= 0:
        raise VoicebotError(f"{name}: no speech found in the clip")
    return Utterance(name, samples, end)
