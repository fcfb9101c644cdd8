"""Departments (transfer targets), named opening-hour schedules and the shared fact values.

All three live in config (``departments:``, ``hours:`` and ``knowledge.values``), once, so a
phone number or a queue name is changed in one place and every article and channel follows.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from voicebot.knowledge.hours import Schedule

if TYPE_CHECKING:
    from voicebot.config import Settings

HUMAN = "borgerservice"  # the department id of the human queue on the main number


@dataclasses.dataclass
class Department:
    """Where a caller can be sent.

    ``target`` is handed to the dialplan (channel variable VOICEBOT_TARGET): a queue name or a
    context/extension the admins own. ``phone`` and ``link`` are what the chat tells the citizen.
    """

    name: str
    target: str
    hours: str = ""  # a schedule name under ``hours:``; empty: not known here (see link)
    phone: str = ""
    link: str = ""

    def validate(self) -> None:
        if not self.target.strip():
            raise ValueError("target: must not be empty")
        if not self.name.strip():
            raise ValueError("name: must not be empty")


@dataclasses.dataclass
class KnowledgeConfig:
    """The ``knowledge:`` section."""

    directory: str = "knowledge"  # one sub-folder per tenant, relative to the project root
    tenant: str = "kff"
    values: dict[str, str] = dataclasses.field(default_factory=dict)  # {name} placeholders
    gate_on_reload: bool = True  # a SIGHUP reload runs the tenant's evaluation gate (_gate.yaml) first


@dataclasses.dataclass
class Directory:
    """Departments and schedules, validated together so a dangling schedule name is caught."""

    departments: dict[str, Department]
    schedules: dict[str, Schedule]

    def schedule(self, department_id: str) -> Schedule | None:
        """The department's schedule, or None when its hours are not kept in config."""
        dept = self.departments.get(department_id)
        return self.schedules.get(dept.hours) if dept and dept.hours else None


def load_directory(settings: Settings) -> Directory:
    """Read ``departments:`` and ``hours:`` from settings; errors name file, line and key."""
    from voicebot.errors import ConfigError

    schedules = {name: settings.section(f"hours.{name}", Schedule)
                 for name in (settings.data.get("hours") or {})}
    schedules.setdefault("always", Schedule(always=True))
    departments = {name: settings.section(f"departments.{name}", Department)
                   for name in (settings.data.get("departments") or {})}
    for key, dept in departments.items():
        if dept.hours and dept.hours not in schedules:
            loc = settings.where.get(f"departments.{key}.hours")
            raise ConfigError(f"no schedule named {dept.hours!r} under hours: "
                              f"(known: {', '.join(sorted(schedules))})",
                              file=loc.file if loc else None, line=loc.line if loc else None,
                              key=f"departments.{key}.hours")
    return Directory(departments, schedules)
