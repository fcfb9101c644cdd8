"""Candidate new articles: what citizens asked that the bot did not understand, grouped by meaning.

The phrasings come from the records (the stored, already redacted text of turns not understood,
as in the monthly report's "top unrecognized"); each is embedded with the matcher's own sentence
encoder, and scikit-learn's agglomerative clustering (average linkage on cosine distance, cut at
``max_distance``) groups them. A group of ``min_size`` or more is a candidate article; its
nearest existing article is shown so staff can tell "new topic" from "missing examples".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from pathlib import Path

import numpy as np

from voicebot.staff.queries import open_readonly
from voicebot.store.base import timestamp

MAX_TEXTS = 2000  # the most recent phrasings clustered (agglomerative clustering is quadratic)


@dataclasses.dataclass
class Suggestion:
    size: int                       # utterances in the group (repeats included)
    examples: list[tuple[str, int]]  # (text, times said), most frequent first
    nearest_article: str | None     # the intent the matcher ranks first for the group's central text
    nearest_score: float | None


def unrecognized_texts(path: Path, tenant: str, since: dt.datetime, limit: int = MAX_TEXTS) -> list[str]:
    """Texts of ``tenant``'s turns not understood since ``since`` (test calls, events and key
    presses left out), newest first, one entry per turn."""
    db = open_readonly(path)
    if db is None:
        return []
    try:
        rows = db.execute(
            "SELECT t.heard FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "WHERE c.tenant = ? AND c.ref IS NULL AND t.at >= ? "
            "AND (t.intent IS NULL OR t.intent = 'none') AND t.decision IN ('rephrase', 'menu') "
            "AND t.heard NOT LIKE '(%)' AND t.heard NOT GLOB '[[]?]' AND trim(t.heard) <> '' "
            "ORDER BY t.at DESC LIMIT ?", (tenant, timestamp(since), max(0, limit))).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def suggest(texts: list[str], matcher, max_distance: float = 0.12, min_size: int = 2) -> list[Suggestion]:
    """Groups of similar phrasings (largest first); needs the matcher's embedding model."""
    from sklearn.cluster import AgglomerativeClustering

    counts = Counter(t.strip() for t in texts if t.strip())
    unique = list(counts)
    if len(unique) < 2:
        return []
    vectors = matcher.embed_queries(unique)
    if vectors is None:
        return []
    labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=max_distance).fit_predict(vectors)
    out = []
    for label in set(labels.tolist()):
        members = [i for i, lab in enumerate(labels) if lab == label]
        size = sum(counts[unique[i]] for i in members)
        if size < min_size:
            continue
        centre = vectors[members].mean(axis=0)
        central = unique[members[int(np.argmax(vectors[members] @ centre))]]
        ranked = matcher.match(central).ranked
        top = next(((intent, score) for intent, score in ranked if intent != "none"), (None, None))
        examples = sorted(((unique[i], counts[unique[i]]) for i in members), key=lambda e: (-e[1], e[0]))
        out.append(Suggestion(size, examples, top[0], None if top[1] is None else round(float(top[1]), 2)))
    return sorted(out, key=lambda s: (-s.size, s.examples[0][0]))
