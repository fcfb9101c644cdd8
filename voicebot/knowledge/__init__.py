"""Knowledge articles, departments and opening hours: loading and validation.

Public entry points: ``load_knowledge(directory)`` and ``knowledge_dir(settings)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.knowledge.departments import HUMAN, Department, Directory, KnowledgeConfig, load_directory
from voicebot.knowledge.hours import Schedule
from voicebot.knowledge.loader import load_articles
from voicebot.knowledge.model import FOLLOWUP_TOPICS, Action, Article, KnowledgeBase, Rule

if TYPE_CHECKING:
    from voicebot.config import Settings

__all__ = ["Action", "Article", "Department", "Directory", "FOLLOWUP_TOPICS", "HUMAN",
           "KnowledgeBase", "KnowledgeConfig", "Rule", "Schedule", "knowledge_dir",
           "load_knowledge", "load_for_settings"]


def knowledge_dir(settings: Settings) -> Path:
    """The knowledge folder of the configured tenant (``knowledge/kff`` by default)."""
    cfg = settings.section("knowledge", KnowledgeConfig)
    return settings.path(cfg.directory) / cfg.tenant


def load_for_settings(settings: Settings, directory: Path | None = None) -> KnowledgeBase:
    """Load articles with the values and departments from ``settings`` (the normal path)."""
    cfg = settings.section("knowledge", KnowledgeConfig)
    directory_cfg = load_directory(settings)
    # opening hours are config too: offer them to articles as {hours_<schedule>}
    values = {f"hours_{name}": sched.describe() for name, sched in directory_cfg.schedules.items()}
    values.update(cfg.values)
    return load_articles(directory or knowledge_dir(settings), values, directory_cfg)


def load_knowledge(directory: Path, settings: Settings | None = None) -> KnowledgeBase:
    """Load and validate every article under ``directory``.

    Placeholders and departments come from ``settings`` (default: the embedded defaults plus
    $VOICEBOT_CONFIG), so callers that only need the texts can pass just a folder.
    """
    if settings is None:
        from voicebot.config import load_settings

        settings = load_settings()
    return load_for_settings(settings, Path(directory))
