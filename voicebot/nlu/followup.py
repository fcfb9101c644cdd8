"""Conversation cues that are not intents: follow-up topics, yes/no, choices, closings.

"og hvad koster det?" only makes sense with the previous article as context, so the dialogue
asks these questions before (or instead of) running the intent matcher.
"""

from __future__ import annotations

import re

from voicebot.nlu.normalize import fold, normalize

_TOPICS = {
    "pris": r"\b(koster|kost|pris\w*|gebyr\w*|betale\w*|gratis|dyrt|beloeb\w*)\b",
    "tid": r"\b(hvor lang tid|hvor hurtigt|hvornaar (faar|kommer|er det klar)|leveringstid\w*|behandlingstid\w*|varer det|tager det)\b",
    "medbring": r"\b(medbring\w*|have med|tage med|tag med|skal jeg have med|hvilke papirer|dokumenter)\b",
    "hvor": r"\b(hvor ligger|hvor skal jeg hen|hvilken adresse|hvor er (det|i|jeres)|adressen)\b",
    "online": r"\b(online|paa nettet|paa netttet|digitalt|hjemmefra|paa computeren|kan jeg selv|selv goere)\b",
    "aabent": r"\b(aabent|aaben|aabningstid\w*|lukker|aabner)\b",
}
_TOPIC_RE = {topic: re.compile(rx) for topic, rx in _TOPICS.items()}
_YES = re.compile(r"^(ja|jo|ja tak|ja gerne|gerne|ok|okay|okej|det vil jeg gerne|ja det vil jeg gerne|yes|1)\b")
_NO = re.compile(r"^(nej|nej tak|ellers tak|ikke nu|nope|2)\b")
_CLOSING = re.compile(r"^(nej tak|tak for hjaelpen|det var det( hele)?|det var alt|farvel|hej hej|tak skal du have)\b")
_ORDINALS = {"foerste": 0, "1": 0, "den foerste": 0, "anden": 1, "andet": 1, "2": 1, "den anden": 1,
             "sidste": 1, "den sidste": 1}


def _folded(text: str) -> str:
    return fold(" ".join(text.lower().replace("?", " ").replace("!", " ").replace(".", " ").split()))


def followup_topic(text: str) -> str | None:
    """The follow-up topic a short question is about ("og hvad koster det?" -> "pris")."""
    folded = fold(normalize(text).text)
    for topic, rx in _TOPIC_RE.items():
        if rx.search(folded):
            return topic
    return None


_FUNCTION_WORDS = frozenset(fold(w) for w in """
og men så hvad hvor hvordan hvornår hvilke hvilken hvem hvis det den der de er var har have
jeg du man vi i mig dig skal kan vil må gerne så også lige egentlig mon nu da at til på med for om
af en et noget nogen gøre få tage bruge the
""".split())


def content_words(text: str) -> list[str]:
    """The words of a follow-up that are neither the topic phrase nor function words.

    "og hvad koster det?" has none (it refers back); "hvad koster det blå kort" has "blå kort"
    (it names a new subject).
    """
    folded = fold(normalize(text).text)
    for rx in _TOPIC_RE.values():
        folded = rx.sub(" ", folded)
    return [w for w in folded.split() if w not in _FUNCTION_WORDS]


def is_yes(text: str) -> bool:
    return bool(_YES.match(_folded(text).strip(" ,")))


def is_no(text: str) -> bool:
    return bool(_NO.match(_folded(text).strip(" ,")))


def is_closing(text: str) -> bool:
    return bool(_CLOSING.match(_folded(text).strip(" ,")))


def choice_index(text: str) -> int | None:
    """'den første' -> 0, 'nummer to' -> 1; None when the text names no position."""
    folded = _folded(text)
    for word in ("nummer ", "den "):
        folded = folded.replace(word, "")
    folded = folded.replace("to", "2").replace("en", "1") if folded in ("to", "en") else folded
    return _ORDINALS.get(folded.strip())
