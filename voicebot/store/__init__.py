"""Conversation records and the SMS outbox: SQLite (one machine, the default) or PostgreSQL (several
bot instances sharing one database); see ``base.Store`` for the interface both implement.

``open_store(settings)`` is the one way the rest of the project gets a store; ``Recorder`` is the
one writer of conversation records.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Literal

from voicebot.store.base import (ConversationRecord, SmsMessage, Store, StoreError, Turn)
from voicebot.store.recorder import Recorder

if TYPE_CHECKING:
    from voicebot.config import Settings

__all__ = ["ConversationRecord", "Recorder", "SmsMessage", "Store", "StoreConfig", "StoreError", "Turn",
           "open_store", "store_location"]

DSN_ENV = "VOICEBOT_PG_DSN"
PG_INSTALL_HINT = "pip install 'psycopg[binary]>=3.2' 'psycopg-pool>=3.2'"


@dataclasses.dataclass
class StoreConfig:
    """The ``store:`` section."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"  # postgresql: several bot instances, one database
    path: str = "var/voicebot.db"           # sqlite: relative to the project root
    dsn: str = ""                           # postgresql: libpq DSN or URI, no password; $VOICEBOT_PG_DSN wins
    pool_min: int = 1                       # postgresql: connections per bot process
    pool_max: int = 10
    retention_days: int = 90                # `voicebot store purge` deletes older records

    def validate(self) -> None:
        if self.backend == "sqlite" and not self.path:
            raise ValueError("path: must name a file")
        if self.backend == "postgresql":
            self._validate_postgresql()
        if self.retention_days < 1:
            raise ValueError("retention_days: must be at least 1")

    def _validate_postgresql(self) -> None:
        if not self.postgres_dsn():
            # said at the backend key: that is the line the operator wrote
            raise ValueError(f"backend: postgresql needs store.dsn (e.g. 'host=/var/run/postgresql "
                             f"dbname=voicebot user=voicebot') or ${DSN_ENV}")
        if self.pool_min < 0:
            raise ValueError("pool_min: must be 0 or more")
        if self.pool_max < max(1, self.pool_min):
            raise ValueError(f"pool_max: must be at least 1 and at least pool_min ({self.pool_min})")
        try:
            from psycopg import Error as PgError
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:  # open_store says how to install it
            return
        try:
            params = conninfo_to_dict(self.dsn) if self.dsn else {}
        except PgError as exc:  # libpq quotes the text it choked on: not when a password may be in it
            why = "" if "pass" in self.dsn.lower() or "@" in self.dsn else f": {' '.join(str(exc).split())}"
            raise ValueError(f"dsn: not a libpq connection string or URI{why}") from None
        if "password" in params:  # config files get copied and committed; secrets stay in the environment
            raise ValueError("dsn: must not hold a password: set $VOICEBOT_PG_PASSWORD (or libpq's "
                             "$PGPASSWORD, ~/.pgpass) instead")

    def postgres_dsn(self) -> str:
        return os.environ.get(DSN_ENV) or self.dsn


def store_config(settings: Settings) -> StoreConfig:
    return settings.section("store", StoreConfig)


def store_location(settings: Settings) -> str:
    """Which store and where, for people: ``sqlite /srv/var/voicebot.db`` or ``postgresql host=...
    dbname=...`` (never a password)."""
    cfg = store_config(settings)
    if cfg.backend == "sqlite":
        return f"sqlite {settings.path(cfg.path)}"
    try:
        from voicebot.store.postgres import safe_dsn
    except ImportError:
        return "postgresql (psycopg is not installed)"
    return f"postgresql {safe_dsn(cfg.postgres_dsn())}"


def open_store(settings: Settings) -> Store:
    """The configured store, schema created or upgraded."""
    cfg = store_config(settings)
    if cfg.backend == "postgresql":
        return _open_postgres(cfg)
    from voicebot.store.sqlite import SqliteStore

    return SqliteStore(settings.path(cfg.path))


def _open_postgres(cfg: StoreConfig) -> Store:
    from voicebot.config import secret

    try:
        from voicebot.store.postgres import PostgresStore
    except ImportError as exc:
        if exc.name not in ("psycopg", "psycopg_pool"):
            raise
        raise StoreError(f"store.backend postgresql needs psycopg 3 and psycopg-pool: {PG_INSTALL_HINT}") from None
    # $VOICEBOT_PG_PASSWORD (or PG_PASSWORD in asterisk/secrets.env); else libpq's $PGPASSWORD, ~/.pgpass
    return PostgresStore(cfg.postgres_dsn(), password=secret("PG_PASSWORD") or None,
                         pool_min=cfg.pool_min, pool_max=cfg.pool_max)
