"""Is a transcript a finished turn? Used to end a turn early (``speech.vad.complete_end_ms``)
when the speculative transcript at a pause already reads as a whole sentence.

A Danish speaker who pauses after a conjunction, a preposition or a filler ("og", "til", "øh")
is usually going on; after a content word the pause is usually the end of the turn. The rule
is cheap and errs on the side of waiting: anything it does not recognize as finished keeps the
full ``end_silence_ms`` wait, so a caller is never cut off earlier than before.
"""

from __future__ import annotations

import re

# words after which a pause means "more is coming"
TRAILING = frozenset("""
og men eller at fordi så hvis når da som der den det de en et til på i med om for af fra ved
hvor hvad hvem hvilken hvilke hvordan hvorfor jeg du han hun vi mit min mine dit din dine
øh øhm øhh hmm ehm æh altså lige også bare ikke skal vil kan må gerne
""".split())

_WORD = re.compile(r"[0-9a-zæøåéü]+")


def looks_complete(text: str) -> bool:
    """True when ``text`` ends like a finished sentence or answer ("ja", "Jeg har mistet mit pas")."""
    words = _WORD.findall(text.lower())
    return bool(words) and words[-1] not in TRAILING
