"""Knowledge articles: what the bot knows and says, in both channels.

Plain frozen dataclasses; ``loader.py`` builds them from YAML and validates them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from voicebot.knowledge.departments import HUMAN, Directory
from voicebot.knowledge.tenants import Tenant

#: follow-up topics an article may answer ("og hvad koster det?"); the NLU detects them
FOLLOWUP_TOPICS = ("pris", "tid", "medbring", "hvor", "online", "aabent")

ActionKind = Literal["answer", "transfer", "answer_then_offer_transfer"]


@dataclasses.dataclass(frozen=True)
class Action:
    """What happens after (or instead of) the answer."""

    kind: ActionKind = "answer"
    department: str | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """A cheap exact signal for an intent: all ``keywords`` (word prefixes) or a ``regex``."""

    weight: float
    keywords: tuple[str, ...] = ()
    regex: str | None = None
    where: str = ""  # file:line, for messages


@dataclasses.dataclass(frozen=True)
class Article:
    id: str
    tenant: str
    title: str
    examples: tuple[str, ...]
    answer_voice: str
    answer_chat: str
    link: str
    sms: str
    action: Action
    rules: tuple[Rule, ...] = ()
    recording: Path | None = None
    followups: dict[str, str] = dataclasses.field(default_factory=dict)
    file: Path | None = None

    def __hash__(self) -> int:
        return hash((self.tenant, self.id))


@dataclasses.dataclass
class KnowledgeBase:
    """All articles of the loaded tenants plus the departments they may transfer to."""

    articles: list[Article]
    directory: Directory | None = None
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    tenants: dict[str, Tenant] = dataclasses.field(default_factory=dict)
    broken: dict[str, str] = dataclasses.field(default_factory=dict)  # tenant -> why it did not load
    main: str = ""                   # the main number's tenant (knowledge.tenant)

    def __post_init__(self) -> None:
        self.by_id = {a.id: a for a in self.articles}

    def tenant(self, tenant_id: str | None) -> Tenant | None:
        return self.tenants.get(tenant_id or self.main)

    def human_for(self, tenant_id: str | None) -> str:
        """The department "medarbejder" or 0 reaches for a caller who came in on ``tenant_id``."""
        tenant = self.tenant(tenant_id)
        return tenant.human if tenant is not None else HUMAN

    def get(self, intent: str) -> Article | None:
        return self.by_id.get(intent)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.articles]
