"""Tenants: the departments (forvaltninger) that share the platform, one folder each.

``knowledge/<tenant>/`` holds the tenant's articles and an optional ``_tenant.yaml`` with what
else the tenant owns: its name, its departments (transfer targets, with their queues in the
dialplan) and their opening hours, the greeting on its own number, and the department its
callers reach with "medarbejder" or 0. Departments and schedules in the main config stay shared
by every tenant (Borgerservice's human queue is one of them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from voicebot.knowledge.departments import HUMAN, Department
from voicebot.knowledge.hours import Schedule

TENANT_FILE = "_tenant.yaml"


@dataclasses.dataclass
class Greeting:
    """What the bot says first on this tenant's own number (and in its chat); empty: the shared text."""

    voice: str = ""
    voice_closed: str = ""   # "{opens}" is replaced with when the tenant's human service opens
    chat: str = ""

    def validate(self) -> None:
        if self.voice_closed and "{opens}" not in self.voice_closed:
            raise ValueError("voice_closed: must say when the service opens: put {opens} in the text")


@dataclasses.dataclass
class Tenant:
    """One tenant's ``_tenant.yaml`` (every key optional)."""

    name: str = ""
    human: str = HUMAN       # the department "medarbejder"/0 reaches on this tenant's own number
    greeting: Greeting = dataclasses.field(default_factory=Greeting)
    departments: dict[str, Department] = dataclasses.field(default_factory=dict)
    hours: dict[str, Schedule] = dataclasses.field(default_factory=dict)
    values: dict[str, str] = dataclasses.field(default_factory=dict)  # extra {name} placeholders
    id: str = ""             # the folder name (set by the loader, not written in the file)
    folder: Path | None = None

    def validate(self) -> None:
        if not self.human.strip():
            raise ValueError("human: must name a department")


def load_tenant_file(folder: Path) -> Tenant:
    """The folder's ``_tenant.yaml`` validated (errors name file, line and key); none: defaults."""
    from voicebot.config import load_record

    path = folder / TENANT_FILE
    tenant = load_record(path, Tenant) if path.is_file() else Tenant()
    tenant.id, tenant.folder = folder.name, folder
    tenant.name = tenant.name or folder.name
    return tenant


def tenant_folders(root: Path) -> list[Path]:
    """Every tenant folder under the knowledge root, in a stable order (``_x`` and ``.x`` skipped)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
