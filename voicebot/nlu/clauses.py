"""Find the request inside a story: split long utterances into clauses and mark the request.

Why: on the phone people talk in stories ("Ja hej, jeg ringer fordi min mor er blevet dement og
vi skal finde ud af noget med hjemmepleje"; "Jeg er lige flyttet hertil fra Aarhus. Hvad gør jeg
med min læge?"). Matched as one piece, the context sentences dilute the request or hijack it
("flyttet" -> flytning). The matcher scores the clauses as well as the whole and trusts the
clause that carries the request (a question, a "kan jeg ..."/"jeg vil gerne ..." clause, the last
clause) most.

Splitting works on the raw text so it can use punctuation; ASR text has none, so discourse
markers ("fordi", "men", "så", "og nu", "hvad", "hvordan", "kan jeg", "skal jeg" ...) split too.
Fragments with fewer than two content words are merged into a neighbour, so "jeg er så sur"
does not become "jeg er" + "så sur".
"""

from __future__ import annotations

import dataclasses
import re

from voicebot.nlu.normalize import FILLERS, STOPWORDS, fold, tokenize

#: openers that say nothing about the request; removed at the start of the utterance and of
#: every sentence (folded, matched on whole words)
_OPENERS = re.compile(r"""^(?:
      undskyld\ mit\ (?:daarlige\ )?danske?\b\s*
    | (?:ja|jo|nej|hej|hejsa|goddag|godmorgen|god\ morgen|davs|hallo|hello|hi|sorry|oeh|oehm|aeh|altsaa|
         jamen|okay|ok|undskyld|hmm|tak|ja\ tak)\b\s*
    | det\ er\ \w+(?:\ \w+)?\s*$                                          # "det er Birthe"
    | (?:mit\ navn\ er|jeg\ hedder)\ \w+(?:\ \w+)?\b\s*
    | jeg\ ringer\ (?:\w+\ ){0,3}?(?:fordi|angaaende|om|for\ at\ hoere\ om|for\ at\ spoerge\ om|
         paa\ vegne\ af\ \w+(?:\ \w+)?)\b\s*
    | jeg\ har\ et\ (?:lille\ |hurtigt\ |kort\ )?spoergsmaal\ (?:om|angaaende|til\ jer)?\b\s*
    | jeg\ vil\ (?:gerne\ |bare\ )?(?:spoerge|hoere)\ (?:om|ad|jer\ om)?\b\s*
    )+""", re.X)

#: words that start a new clause and are dropped from its start (folded; "så" written "sa" by
#: ASR is too ambiguous to count)
_CONJUNCTIONS = frozenset("fordi men saa".split())
_LEADING = frozenset("og nu da".split())  # dropped from the start of a clause as well
_QUESTION_WORDS = frozenset("hvad hvordan hvornaar hvorfor hvem hvilken hvilket hvilke hvor".split())
_MODALS = frozenset("kan skal maa vil er har findes gaelder goer faar".split())
_SUBJECTS = frozenset("jeg vi man i du han hun de det der min mit mine hans hendes vores".split())
_TWO_WORD = {("og", "nu"), ("og", "saa"), ("og", "derfor"), ("saa", "nu")}
#: clause openings that state what the caller wants ("jeg vil gerne ...", "jeg skal bruge ...")
_REQUEST_START = re.compile(
    r"^(?:jeg|vi|hun|han|min \w+)? ?(?:vil gerne|vil have|vil hellere|skal bruge|skal have|har brug for|"
    r"mangler|oensker|kan ikke finde ud af)\b")

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+|\s+-\s+|(?<=[.!?])$")
_COMMA = re.compile(r",\s*")


@dataclasses.dataclass(frozen=True)
class Clause:
    text: str          # lower-case words of the clause (not yet normalized)
    question: bool     # ends in "?" or opens like a question or a request
    position: int      # 0-based index among the utterance's clauses

    @property
    def words(self) -> list[str]:
        return self.text.split()


def _content_count(words: list[str]) -> int:
    return sum(1 for w in words if fold(w) not in STOPWORDS and w not in FILLERS)


def strip_openers(words: list[str]) -> list[str]:
    """Drop greetings and "jeg ringer fordi ..." framing from the start of a clause."""
    folded = " ".join(fold(w) for w in words)
    match = _OPENERS.match(folded)
    if not match or not match.group(0).strip():
        return words
    dropped = len(match.group(0).split())
    return words[dropped:]


def _opens_question(words: list[str]) -> bool:
    """A question word, or verb-first word order ("kan jeg", "skal vi", "er det")."""
    if not words:
        return False
    first = fold(words[0])
    if first in _QUESTION_WORDS:
        return True
    if first in _MODALS and len(words) > 1 and fold(words[1]) in _SUBJECTS:
        return True
    return bool(_REQUEST_START.match(" ".join(fold(w) for w in words[:5])))


def _marker_splits(words: list[str]) -> list[list[str]]:
    """Split one sentence at discourse markers (for ASR text without punctuation)."""
    pieces: list[list[str]] = [[]]
    i = 0
    while i < len(words):
        w = fold(words[i])
        nxt = fold(words[i + 1]) if i + 1 < len(words) else ""
        starts = False
        if pieces[-1]:
            prev = fold(pieces[-1][-1])
            if w in _CONJUNCTIONS or (w, nxt) in _TWO_WORD:
                starts = True
            elif w in _QUESTION_WORDS and prev not in _QUESTION_WORDS and prev != "og":
                starts = True
            elif (w in _MODALS and nxt in _SUBJECTS and prev not in _QUESTION_WORDS
                  and prev not in _SUBJECTS and prev not in _CONJUNCTIONS and prev not in _LEADING):
                starts = True  # verb-first: "... kan jeg få et nyt"
        if starts:
            pieces.append([])
        pieces[-1].append(words[i])
        i += 1
    return [p for p in pieces if p]


def _merge_short(pieces: list[tuple[list[str], bool]]) -> list[tuple[list[str], bool]]:
    """Merge fragments with fewer than two content words into the following piece (the last
    into the previous one), so every clause can stand on its own."""
    out: list[tuple[list[str], bool]] = []
    carry: list[str] = []
    carry_q = False
    for words, question in pieces:
        words = carry + words
        question = question or carry_q
        if _content_count(words) < 2:
            carry, carry_q = words, question
            continue
        out.append((words, question))
        carry, carry_q = [], False
    if carry:
        if out:
            last, q = out[-1]
            out[-1] = (last + carry, q or carry_q)
        else:
            out.append((carry, carry_q))
    return out


def split_clauses(text: str) -> list[Clause]:
    """The utterance's clauses, openers removed; one clause when there is nothing to split."""
    pieces: list[tuple[list[str], bool]] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if not sentence or not sentence.strip():
            continue
        asked = sentence.rstrip().endswith("?")
        parts = [p for p in _COMMA.split(sentence) if p.strip()]
        for k, part in enumerate(parts):
            words = strip_openers(tokenize(part))
            for j, piece in enumerate(_marker_splits(words)):
                while len(piece) > 1 and (fold(piece[0]) in _CONJUNCTIONS or fold(piece[0]) in _LEADING):
                    piece = piece[1:]
                piece = strip_openers(piece)
                if piece:
                    pieces.append((piece, _opens_question(piece)))
        if asked and pieces:
            words, _ = pieces[-1]
            pieces[-1] = (words, True)
    merged = _merge_short(pieces)
    return [Clause(" ".join(words), question, i) for i, (words, question) in enumerate(merged)]


def request_index(clauses: list[Clause]) -> int:
    """The clause that most likely carries the request: the last question, else the last."""
    for clause in reversed(clauses):
        if clause.question:
            return clause.position
    return len(clauses) - 1


__all__ = ["Clause", "request_index", "split_clauses", "strip_openers"]
