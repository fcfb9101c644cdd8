"""Text-level guards against Whisper's failure modes: repetition loops and run-on hallucination."""

from __future__ import annotations

import zlib


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: raw length over zlib-compressed length (loops compress well)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def collapse_repeats(text: str, max_n: int = 6, keep: int = 2) -> str:
    """Cut any word n-gram repeated back to back more than ``keep`` times down to ``keep``."""
    words = text.split()
    for n in range(1, max_n + 1):
        out: list[str] = []
        i = 0
        while i < len(words):
            gram = words[i:i + n]
            reps = 1
            if len(gram) == n:
                while words[i + reps * n:i + (reps + 1) * n] == gram:
                    reps += 1
            if reps > keep:
                out.extend(gram * keep)
                i += n * reps
            else:
                out.append(words[i])
                i += 1
        words = out
    return " ".join(words)


def limit_length(text: str, audio_s: float, max_chars_per_second: float) -> str:
    """Speech cannot be faster than ~20 characters a second: cut run-on text at a word boundary."""
    limit = int(max(audio_s, 1.0) * max_chars_per_second)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0]


def is_prompt_echo(text: str, prompt: str, min_words: int = 3) -> bool:
    """Whisper sometimes repeats its prompt on audio it cannot read: a transcript of three or
    more words that is a piece of the prompt is treated as no transcript."""
    words = _words(text)
    return len(words) >= min_words and f" {' '.join(words)} " in f" {' '.join(_words(prompt))} "


def _words(text: str) -> list[str]:
    return "".join(c if c.isalnum() else " " for c in text.lower()).split()
