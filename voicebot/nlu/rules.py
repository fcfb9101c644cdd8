"""Per-intent rules: keywords and regular expressions with weights, matched on folded text.

Rules are exact and cheap; they carry the words an admin knows must mean an intent ("kørekort").
Authors write natural Danish; patterns and keywords are folded (æ -> ae ...) like the input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from voicebot.knowledge.model import Article
from voicebot.nlu.normalize import fold


class _Compiled:
    def __init__(self, intent: str, weight: float, keywords: tuple[str, ...], regex: str | None) -> None:
        self.intent = intent
        self.weight = weight
        self.keywords = tuple(fold(k) for k in keywords)
        self.regex = re.compile(fold(regex)) if regex else None

    def matches(self, folded: str, words: list[str]) -> bool:
        if self.keywords and not all(any(w.startswith(k) for w in words) for k in self.keywords):
            return False
        return self.regex is None or self.regex.search(folded) is not None


class RuleMatcher:
    """Scores each intent by the highest weight among its matching rules."""

    def __init__(self, articles: Iterable[Article]) -> None:
        self.rules = [_Compiled(a.id, r.weight, r.keywords, r.regex) for a in articles for r in a.rules]

    def scores(self, folded: str) -> dict[str, float]:
        words = folded.split()
        out: dict[str, float] = {}
        for rule in self.rules:
            if rule.weight > out.get(rule.intent, 0.0) and rule.matches(folded, words):
                out[rule.intent] = rule.weight
        return out
