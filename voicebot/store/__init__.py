"""Conversation records and the SMS outbox (SQLite by default; see ``base.Store`` for backends).

``open_store(settings)`` is the one way the rest of the project gets a store; ``Recorder`` is the
one writer of conversation records.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

from voicebot.store.base import (ConversationRecord, SmsMessage, Store, StoreError, Turn)
from voicebot.store.recorder import Recorder

if TYPE_CHECKING:
    from voicebot.config import Settings

__all__ = ["ConversationRecord", "Recorder", "SmsMessage", "Store", "StoreConfig", "StoreError", "Turn",
           "open_store"]


@dataclasses.dataclass
class StoreConfig:
    """The ``store:`` section."""

    backend: Literal["sqlite"] = "sqlite"   # postgresql: later, for several bot instances
    path: str = "var/voicebot.db"           # relative to the project root
    retention_days: int = 90                # `voicebot store purge` deletes older records

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path: must name a file")
        if self.retention_days < 1:
            raise ValueError("retention_days: must be at least 1")


def store_config(settings: Settings) -> StoreConfig:
    return settings.section("store", StoreConfig)


def open_store(settings: Settings) -> Store:
    """The configured store, schema created or upgraded."""
    from voicebot.store.sqlite import SqliteStore

    cfg = store_config(settings)
    return SqliteStore(settings.path(cfg.path))
