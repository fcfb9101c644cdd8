"""Domain words for ASR biasing (Whisper hotwords, Vosk phrase lists), taken from the articles.

Article titles name what citizens call about ("Bopælsattest", "sundhedskort", "Pladsanvisning");
their longer words are the ones a general-purpose recognizer most often gets wrong.
"""

from __future__ import annotations

import re

from voicebot.knowledge.model import KnowledgeBase

_WORD = re.compile(r"[A-Za-zÆØÅæøå][A-Za-zÆØÅæøå-]+")
_SKIP = {"eller", "og", "til", "med", "fra", "det", "den", "dansk", "københavns", "hjælp", "bestil", "forny"}


def domain_words(kb: KnowledgeBase, min_length: int = 5) -> list[str]:
    """Distinct content words of the article titles, in article order."""
    seen: dict[str, str] = {}
    for article in kb.articles:
        for word in _WORD.findall(article.title):
            word = word.strip("-")
            key = word.lower()
            if len(word) >= min_length and key not in _SKIP and key not in seen:
                seen[key] = word
    return list(seen.values())
