"""Word error rate for Danish transcripts, after normalizing case, punctuation and numbers."""

from __future__ import annotations

import re
import unicodedata

_ONES = ["nul", "en", "to", "tre", "fire", "fem", "seks", "syv", "otte", "ni", "ti", "elleve",
         "tolv", "tretten", "fjorten", "femten", "seksten", "sytten", "atten", "nitten"]
_TENS = {20: "tyve", 30: "tredive", 40: "fyrre", 50: "halvtreds", 60: "tres", 70: "halvfjerds",
         80: "firs", 90: "halvfems"}


def number_words(n: int) -> str:
    """Danish words for 0 <= n < 1,000,000, written as one token per word group ("enogtyve")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        ones, tens = n % 10, n - n % 10
        return (_ONES[ones] + "og" if ones else "") + _TENS[tens]
    if n < 1000:
        head = "hundrede" if n // 100 == 1 else f"{_ONES[n // 100]} hundrede"
        return head + (f" og {number_words(n % 100)}" if n % 100 else "")
    if n < 1_000_000:
        head = "tusind" if n // 1000 == 1 else f"{number_words(n // 1000)} tusind"
        return head + (f" {number_words(n % 1000)}" if n % 1000 else "")
    return str(n)


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation, digits spelled out in Danish."""
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"(?<=\d)[.](?=\d{3}\b)", "", text)          # 1.000 -> 1000
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return text.split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit operations, reference words) after normalization."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def wer(reference: str, hypothesis: str) -> float:
    errors, words = word_errors(reference, hypothesis)
    return errors / words if words else float(bool(normalize(hypothesis)))
