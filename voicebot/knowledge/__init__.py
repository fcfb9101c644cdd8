"""Knowledge articles, departments and opening hours: loading and validation.

Public entry points: ``load_knowledge(directory)`` and ``knowledge_dir(settings)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.knowledge.departments import HUMAN, Department, Directory, KnowledgeConfig, load_directory
from voicebot.knowledge.hours import Schedule
from voicebot.knowledge.loader import load_articles
from voicebot.knowledge.platform import merged_directory, placeholder_values, load_platform, load_tenant
from voicebot.knowledge.model import FOLLOWUP_TOPICS, Action, Article, KnowledgeBase, Rule
from voicebot.knowledge.tenants import Tenant

if TYPE_CHECKING:
    from voicebot.config import Settings

__all__ = ["Action", "Article", "Department", "Directory", "FOLLOWUP_TOPICS", "HUMAN",
           "KnowledgeBase", "KnowledgeConfig", "Rule", "Schedule", "Tenant", "knowledge_dir",
           "knowledge_root", "load_articles", "load_directory", "load_knowledge", "load_for_settings"]


def knowledge_dir(settings: Settings) -> Path:
    """The knowledge folder of the main number's tenant (``knowledge/kff`` by default)."""
    cfg = settings.section("knowledge", KnowledgeConfig)
    return settings.path(cfg.directory) / cfg.tenant


def knowledge_root(settings: Settings) -> Path:
    """The folder holding one sub-folder per tenant (``knowledge/``)."""
    return settings.path(settings.section("knowledge", KnowledgeConfig).directory)


def load_for_settings(settings: Settings, directory: Path | None = None, *,
                      previous: KnowledgeBase | None = None, strict: bool = False) -> KnowledgeBase:
    """The normal path: every tenant's articles with the values and departments from ``settings``
    (knowledge/platform.py). With ``directory``: that one folder only (its ``_tenant.yaml`` too)."""
    if directory is None:
        return load_platform(settings, previous, strict=strict)
    cfg = settings.section("knowledge", KnowledgeConfig)
    part = load_tenant(Path(directory), load_directory(settings), cfg.values, own_folder=False)
    tenant = part.tenant
    directory_cfg = merged_directory(load_directory(settings), [tenant])
    return KnowledgeBase(part.articles, directory_cfg, placeholder_values(directory_cfg, cfg.values, tenant),
                         part.warnings, tenants={tenant.id: tenant}, main=tenant.id)


def load_knowledge(directory: Path, settings: Settings | None = None) -> KnowledgeBase:
    """Load and validate every article under ``directory``.

    Placeholders and departments come from ``settings`` (default: the embedded defaults plus
    $VOICEBOT_CONFIG), so callers that only need the texts can pass just a folder.
    """
    if settings is None:
        from voicebot.config import load_settings

        settings = load_settings()
    return load_for_settings(settings, Path(directory))
