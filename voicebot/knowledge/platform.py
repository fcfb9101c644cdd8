"""The shared platform: every tenant's knowledge loaded into one knowledge base.

Citizens meet one bot, so the main number matches across all tenants' articles; each article
keeps its tenant, and a tenant's own number prefers its own (dialogue/engine.py). Tenants are
loaded one by one: a broken folder is reported and left out (or, on a reload, keeps its last
good version), and the other tenants serve on. Article ids and department ids are one namespace
for the whole platform, because the dialplan, the records and the evaluation sets name them.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.config import load_yaml
from voicebot.errors import ConfigError
from voicebot.knowledge.departments import Directory, KnowledgeConfig, load_directory
from voicebot.knowledge.loader import load_articles
from voicebot.knowledge.model import Article, KnowledgeBase
from voicebot.knowledge.tenants import TENANT_FILE, Tenant, load_tenant_file, tenant_folders

if TYPE_CHECKING:
    from voicebot.config import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TenantPart:
    tenant: Tenant
    articles: list[Article]
    warnings: list[str]


def load_platform(settings: Settings, previous: KnowledgeBase | None = None, *,
                  strict: bool = False) -> KnowledgeBase:
    """Load every tenant under ``knowledge.directory``.

    A tenant that fails to load is named in ``kb.broken`` with its error; with ``previous`` (a
    reload) it keeps the articles it had. ``strict`` (``voicebot knowledge check``) raises the
    first error instead. No tenant loaded at all is an error.
    """
    cfg = settings.section("knowledge", KnowledgeConfig)
    root = settings.path(cfg.directory)
    folders = tenant_folders(root)
    if not folders:
        raise ConfigError("no tenant folders (knowledge/<tenant>/) found", file=str(root))
    # the main number's tenant first: on a clash of ids, it keeps them
    folders.sort(key=lambda p: (p.name != cfg.tenant, p.name))
    shared = load_directory(settings)
    parts: dict[str, TenantPart] = {}
    broken: dict[str, str] = {}
    for folder in folders:
        try:
            part = load_tenant(folder, shared, cfg.values)
            _check_unique(part, parts)
        except ConfigError as exc:
            if strict:
                raise
            broken[folder.name] = str(exc)
            kept = _previous_part(previous, folder.name)
            log.error("tenant not loaded: its knowledge is left out" if kept is None else
                      "tenant not reloaded: it keeps its previous knowledge",
                      extra={"tenant": folder.name, "error": str(exc)})
            if kept is None:
                continue
            part = kept
        parts[folder.name] = part
    if not parts:
        raise ConfigError("no tenant could be loaded: " + "; ".join(broken.values()), file=str(root))
    return _combine(settings, cfg, shared, parts, broken)


def platform_directory(settings: Settings) -> Directory:
    """Every department and schedule on the platform (shared and each tenant's own) without loading
    articles: for readers of records such as the monthly report. A broken tenant file is skipped."""
    cfg = settings.section("knowledge", KnowledgeConfig)
    shared = load_directory(settings)
    tenants = []
    for folder in tenant_folders(settings.path(cfg.directory)):
        try:
            tenant = load_tenant_file(folder)
            merged_directory(shared, [*tenants, tenant])
        except ConfigError as exc:
            log.warning("tenant file skipped", extra={"tenant": folder.name, "error": str(exc)})
            continue
        tenants.append(tenant)
    return merged_directory(shared, tenants)


def load_tenant(folder: Path, shared: Directory, values: dict[str, str], *, own_folder: bool = True) -> TenantPart:
    """One tenant's ``_tenant.yaml`` and articles, validated against the shared departments.

    ``own_folder``: the folder is named after the tenant, so an article's ``tenant:`` must match it
    (false for a loose folder of articles, e.g. in a test or a proposal)."""
    tenant = load_tenant_file(folder)
    directory = merged_directory(shared, [tenant])
    if tenant.human not in directory.departments:
        raise _tenant_error(folder, "human", f"unknown department {tenant.human!r} "
                                             f"(known: {', '.join(sorted(directory.departments))})")
    kb = load_articles(folder, placeholder_values(directory, values, tenant), directory)
    articles = []
    for article in kb.articles:
        if not own_folder:
            articles.append(article)
            continue
        if article.tenant and article.tenant != tenant.id:
            raise ConfigError(f"article {article.id!r} says tenant {article.tenant!r}, but it lies in "
                              f"the folder of tenant {tenant.id!r} (move it, or fix the key)",
                              file=str(article.file), key="tenant")
        articles.append(dataclasses.replace(article, tenant=tenant.id))
    return TenantPart(tenant, articles, kb.warnings)


def merged_directory(shared: Directory, tenants: list[Tenant]) -> Directory:
    """Shared departments and schedules plus the tenants' own; a tenant may not redefine one."""
    departments, schedules = dict(shared.departments), dict(shared.schedules)
    for tenant in tenants:
        for kind, own, into in (("departments", tenant.departments, departments),
                                ("hours", tenant.hours, schedules)):
            for name, value in own.items():
                if name in into:
                    raise _tenant_error(tenant.folder, f"{kind}.{name}",
                                        f"{name!r} is already defined (main config or another tenant)")
                into[name] = value
        for name, dept in tenant.departments.items():
            if dept.hours and dept.hours not in schedules:
                raise _tenant_error(tenant.folder, f"departments.{name}.hours",
                                    f"no schedule named {dept.hours!r} (known: {', '.join(sorted(schedules))})")
    return Directory(departments, schedules)


def placeholder_values(directory: Directory, shared_values: dict[str, str], tenant: Tenant) -> dict[str, str]:
    """Placeholders: {hours_<schedule>} for every schedule, then config values, then the tenant's."""
    values = {f"hours_{name}": sched.describe() for name, sched in directory.schedules.items()}
    return {**values, **shared_values, **tenant.values}


def _check_unique(part: TenantPart, loaded: dict[str, TenantPart]) -> None:
    for other in loaded.values():
        ids = {a.id: a for a in other.articles}
        for article in part.articles:
            if article.id in ids:
                raise ConfigError(f"article id {article.id!r} is also used by tenant {other.tenant.id!r} "
                                  f"({ids[article.id].file}); ids are shared by the whole platform",
                                  file=str(article.file), key="id")
        for name in part.tenant.departments.keys() & other.tenant.departments.keys():
            raise _tenant_error(part.tenant.folder, f"departments.{name}",
                                f"department {name!r} is also defined by tenant {other.tenant.id!r}")
        for name in part.tenant.hours.keys() & other.tenant.hours.keys():
            raise _tenant_error(part.tenant.folder, f"hours.{name}",
                                f"schedule {name!r} is also defined by tenant {other.tenant.id!r}")


def _previous_part(previous: KnowledgeBase | None, tenant_id: str) -> TenantPart | None:
    if previous is None or tenant_id not in previous.tenants:
        return None
    return TenantPart(previous.tenants[tenant_id], [a for a in previous.articles if a.tenant == tenant_id], [])


def _combine(settings: Settings, cfg: KnowledgeConfig, shared: Directory, parts: dict[str, TenantPart],
             broken: dict[str, str]) -> KnowledgeBase:
    tenants = {tid: part.tenant for tid, part in parts.items()}
    directory = merged_directory(shared, list(tenants.values()))
    articles = [a for part in parts.values() for a in part.articles]
    warnings = [w for part in parts.values() for w in part.warnings]
    warnings += [f"tenant {tid} not loaded: {error}" for tid, error in broken.items()]
    main = cfg.tenant if cfg.tenant in tenants else next(iter(tenants))
    values = placeholder_values(directory, cfg.values, tenants[main])
    return KnowledgeBase(articles, directory, values, warnings, tenants=tenants, broken=broken, main=main)


def _tenant_error(folder: Path | None, key: str, problem: str) -> ConfigError:
    path = (folder / TENANT_FILE) if folder else None
    line = None
    if path is not None and path.is_file():
        _, where = load_yaml(path)
        probe = key
        while probe and line is None:
            loc = where.get(probe)
            line = loc.line if loc else None
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
    return ConfigError(problem, file=str(path) if path else None, line=line, key=key)
