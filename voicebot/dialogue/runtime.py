"""The loaded knowledge, matcher and engine that the phone and the chat share.

``reload()`` builds a complete new set from disk and swaps it in with one assignment, so a turn in
either channel sees either the old or the new knowledge, never a mix; a broken edit is rejected
and the old set keeps serving. ``before_switch`` lets the phone synthesize new answers first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from voicebot.dialogue.engine import DialogueEngine
from voicebot.dialogue.texts import ConversationRules, DialogueTexts
from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.knowledge import KnowledgeBase
    from voicebot.nlu import IntentMatcher

log = logging.getLogger(__name__)


def engine_for(settings: Settings, kb: KnowledgeBase, matcher: IntentMatcher, **kwargs) -> DialogueEngine:
    return DialogueEngine(kb, matcher, texts=settings.section("dialogue", DialogueTexts),
                          rules=settings.section("conversation", ConversationRules), **kwargs)


class DialogueRuntime:
    def __init__(self, settings: Settings, kb: KnowledgeBase, matcher: IntentMatcher) -> None:
        self.settings = settings
        self.engine = engine_for(settings, kb, matcher)

    @property
    def kb(self) -> KnowledgeBase:
        return self.engine.kb

    def reload(self, before_switch: Callable[[DialogueEngine], None] | None = None) -> tuple[bool, str]:
        """Reload knowledge from disk; on any error keep serving the old one. Returns (ok, message)."""
        from voicebot.knowledge import load_for_settings
        from voicebot.nlu import matcher_for_settings

        old = self.engine.matcher
        try:
            kb = load_for_settings(self.settings, previous=self.kb)  # a broken tenant keeps its last good set
            matcher = matcher_for_settings(self.settings, kb, old.embeddings.embedder if old.embeddings else None)
            engine = engine_for(self.settings, kb, matcher)
            self._gate(kb, matcher)
            if before_switch is not None:
                before_switch(engine)
        except VoicebotError as exc:
            log.error("knowledge reload rejected, keeping the previous knowledge", extra={"error": str(exc)})
            return False, str(exc)
        self.engine = engine
        log.info("knowledge reloaded", extra={"articles": len(kb.articles), "tenants": sorted(kb.tenants)})
        if kb.broken:
            kept = "; ".join(f"{t}: {error}" for t, error in kb.broken.items())
            return False, f"{len(kb.articles)} articles loaded; kept the previous knowledge of {kept}"
        return True, f"{len(kb.articles)} articles loaded ({len(kb.tenants)} tenants)"


    def _gate(self, kb, matcher) -> None:
        """The knowledge gate (knowledge/gate.py): a change that lowers accuracy is rejected."""
        from voicebot.config import PROJECT_ROOT
        from voicebot.knowledge import KnowledgeConfig
        from voicebot.knowledge.gate import run_gate

        if not self.settings.section("knowledge", KnowledgeConfig).gate_on_reload:
            return
        for tenant in kb.tenants.values():
            result = run_gate(matcher, set(kb.ids), tenant.folder, PROJECT_ROOT)
            if result is not None and not result.ok:
                raise VoicebotError(f"the knowledge gate of {tenant.id} failed: {result.message()}")


def build_runtime(settings: Settings) -> DialogueRuntime:
    """Load knowledge and the matcher once (the embedding model loads here, ~1 s when cached)."""
    from voicebot.knowledge import load_for_settings
    from voicebot.nlu import matcher_for_settings

    kb = load_for_settings(settings)
    for warning in kb.warnings:
        log.warning(warning)
    return DialogueRuntime(settings, kb, matcher_for_settings(settings, kb))


def greeting_text(settings: Settings, clock=None) -> str:
    """The phone greeting for a call at ``clock`` (default: now): what the bot says first. Used by
    ``voicebot bench call`` and the tests to recognize it in what a caller heard."""
    from voicebot.dialogue.engine import Conversation
    from voicebot.knowledge import load_for_settings

    engine = engine_for(settings, load_for_settings(settings), None)  # the greeting needs no matcher
    return engine.start(Conversation("voice", clock=clock))[0].text
