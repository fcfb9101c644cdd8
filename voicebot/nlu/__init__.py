"""Intent matching for voice and chat: normalization, rules, n-grams, embeddings, combination.

``matcher_for_settings(settings, kb)`` is the one way the rest of the project builds a matcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicebot.nlu.config import NluConfig
from voicebot.nlu.matcher import NONE, IntentMatcher, MatchResult, build_matcher

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.knowledge import KnowledgeBase
    from voicebot.nlu.embeddings import CachedEmbedder

__all__ = ["NONE", "IntentMatcher", "MatchResult", "NluConfig", "build_matcher", "matcher_for_settings"]


def matcher_for_settings(settings: Settings, kb: KnowledgeBase,
                         embedder: CachedEmbedder | None = None) -> IntentMatcher:
    """Build the matcher from the ``nlu:`` section (pass ``embedder`` to reuse a loaded model)."""
    cfg = settings.section("nlu", NluConfig)
    return build_matcher(kb, cfg, settings.path(cfg.cache_dir), embedder)
