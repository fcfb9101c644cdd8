"""Danish text normalization, so that ASR output and typed chat text meet the same matcher.

Two forms come out of one utterance:

* ``text``: lower-case Danish with æ/ø/å, fillers and punctuation removed, compounds that ASR
  split apart joined again and spellings repaired against the knowledge vocabulary. This is what
  the embedding model reads.
* ``folded``: the same with æ/ø/å written as ae/oe/aa, so "koerekort" typed on a foreign keyboard
  and "kørekort" are one string. Rules and the character n-gram matcher read this.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterable

FOLD = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "é": "e", "ü": "u", "ö": "oe", "ä": "ae"})

FILLERS = frozenset("""
øh øhm øhh æh æhm æhh eh ehm hmm hm mm mmm altså jamen nåh nå hej hejsa hejhej goddag godmorgen
goddagen davs halløj dav hallo undskyld ok okay okej jo ja joh
""".split())

NUMBER_WORDS = {
    "nul": "0", "to": "2", "tre": "3", "fire": "4", "fem": "5", "seks": "6", "syv": "7",
    "otte": "8", "ni": "9", "ti": "10", "elleve": "11", "tolv": "12", "tyve": "20",
    "tredive": "30", "fyrre": "40", "halvtreds": "50", "tres": "60", "halvfjerds": "70",
    "firs": "80", "halvfems": "90", "hundrede": "100",
}

#: function words dropped from long utterances before the embedding model (folded spelling)
STOPWORDS = frozenset("""
og men saa hvad hvordan jeg du man vi de den det der er var har have i mig dig skal kan vil maa
gerne ogsaa lige egentlig mon nu da at til paa med for om af en et noget nogen sig sin sit
""".split())

_TOKEN_RE = re.compile(r"[0-9a-zæøåéüöä]+(?:[.\-][0-9a-zæøåéüöä]+)*")


def fold(text: str) -> str:
    """æ/ø/å -> ae/oe/aa (lower-case input)."""
    return text.translate(FOLD)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; keeps inner dots and dashes ("borger.dk", "id-kort")."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _TOKEN_RE.findall(text)


@dataclasses.dataclass(frozen=True)
class Normalized:
    text: str
    folded: str

    @property
    def empty(self) -> bool:
        return not self.text


def _edit_distance_at_most(a: str, b: str, limit: int) -> bool:
    """Levenshtein distance <= limit, with early exit (short words, so plain Python is fast)."""
    if abs(len(a) - len(b)) > limit:
        return False
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        if min(cur) > limit:
            return False
        prev = cur
    return prev[-1] <= limit


def skeletons(folded: str) -> tuple[str, str]:
    """The two spellings of a folded word with æ/ø/å written as one plain vowel.

    ASR transcripts and foreign keyboards often drop the Danish letters altogether: "lage" for
    "læge", "korekort" for "kørekort", "abningstider" for "åbningstider". æ becomes "a" or "e",
    so there are two keys.
    """
    base = folded.replace("aa", "a").replace("oe", "o")
    return base.replace("ae", "a"), base.replace("ae", "e")


def join_letters(tokens: list[str]) -> list[str]:
    """Join runs of single letters: ASR spells out abbreviations ("c p r", "e u", "i d")."""
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if len(token) == 1 and token.isalpha():
            run.append(token)
            continue
        if len(run) >= 2:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if token:
            out.append(token)
    return out


_ENDINGS = frozenset("e r n t s er en et ne es re te de ende erne ene".split())


def _inflection_of(a: str, b: str) -> bool:
    """One word is the other plus a Danish ending: a different form, not a misspelling."""
    short, long_ = sorted((a, b), key=len)
    return long_.startswith(short) and long_[len(short):] in _ENDINGS


class Vocabulary:
    """Words the knowledge base uses, by folded spelling, for repairing ASR and keyboard text.

    Why: ASR splits Danish compounds ("køre kort") and mishears endings ("folkepention"), and
    foreign keyboards write "oe" for "ø" or drop æ/ø/å ("lage"). Mapping such tokens back onto
    words the articles use gives every later stage (rules, n-grams, embeddings) the same clean
    words.
    """

    def __init__(self, texts: Iterable[str]) -> None:
        self.words: dict[str, str] = {}
        counts: dict[str, int] = {}
        for text in texts:
            for token in tokenize(text):
                key = fold(token).replace("-", "")
                self.words.setdefault(key, token)
                counts[key] = counts.get(key, 0) + 1
        # words with æ/ø/å by their plain-vowel spellings; the most frequent word wins a clash
        self._plain: dict[str, str] = {}
        for key in sorted(counts, key=counts.get, reverse=True):
            if key != fold(self.words[key]).replace("-", "") or self.words[key] == key:
                continue  # no æ/ø/å in this word
            for plain in skeletons(key):
                if plain not in self.words:
                    self._plain.setdefault(plain, key)
        self._by_head: dict[str, list[str]] = {}
        for key in self.words:
            if len(key) >= 5:
                self._by_head.setdefault(key[:2], []).append(key)

    def lookup(self, token: str) -> str | None:
        """The vocabulary spelling of a known word, also when written without æ/ø/å."""
        key = fold(token).replace("-", "")
        hit = self.words.get(key)
        if hit is None and key in self._plain:
            hit = self.words[self._plain[key]]
        return hit

    def correct(self, token: str) -> str:
        """The vocabulary spelling of ``token``: exact, de-folded, without æ/ø/å, or a near miss
        of a long word."""
        hit = self.lookup(token)
        if hit is not None or token.isdigit():
            return hit or token
        if len(token) < 6:
            return token
        key = fold(token)
        limit = 1 if len(key) < 9 else 2
        for cand in self._by_head.get(key[:2], ()):
            if _edit_distance_at_most(key, cand, limit):
                if _inflection_of(key, cand):
                    return token  # "italiener" is not a misspelling of "italien"
                return self.words[cand]
        return token

    def join_compounds(self, tokens: list[str]) -> list[str]:
        """Join neighbours whose concatenation is a known word ("sundheds kort" -> "sundhedskort")."""
        out: list[str] = []
        i = 0
        while i < len(tokens):
            if i + 1 < len(tokens):
                joined = self.lookup(tokens[i] + tokens[i + 1])
                # short joins ("til" + "en") are ordinary word pairs, not split compounds
                if joined is not None and (len(joined) >= 8 or self.lookup(tokens[i]) is None):
                    out.append(joined)
                    i += 2
                    continue
            out.append(tokens[i])
            i += 1
        return out


def normalize(text: str, vocabulary: Vocabulary | None = None) -> Normalized:
    """Normalize one utterance (see the module docstring)."""
    tokens = [t for t in tokenize(text) if t not in FILLERS]
    tokens = join_letters([NUMBER_WORDS.get(t, t) for t in tokens])
    if vocabulary is not None:
        tokens = vocabulary.join_compounds(tokens)
        tokens = [vocabulary.correct(t) for t in tokens]
    clean = " ".join(tokens)
    return Normalized(clean, fold(clean))
