"""SMS to callers: an outbox in the store, a dispatcher task, and pluggable gateways.

``sms.gateway: log`` (the default) sends nothing and keeps messages queued; ``http`` posts them
to a provider with the token from ``$VOICEBOT_SMS_TOKEN``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Literal

from voicebot.errors import ConfigError
from voicebot.sms.dispatcher import SmsDispatcher, queue_for_caller
from voicebot.sms.gateway import LogGateway, SmsDeferred, SmsError, SmsGateway

if TYPE_CHECKING:
    from voicebot.config import Settings

__all__ = ["HttpSmsConfig", "LogGateway", "SmsConfig", "SmsDeferred", "SmsDispatcher", "SmsError",
           "SmsGateway", "open_gateway", "queue_for_caller"]


@dataclasses.dataclass
class HttpSmsConfig:
    url: str = ""
    timeout_s: float = 10.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5

    def validate(self) -> None:
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s: must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")
        if self.backoff_base_s < 0:
            raise ValueError("backoff_base_s: must not be negative")


@dataclasses.dataclass
class SmsConfig:
    """The ``sms:`` section."""

    gateway: Literal["log", "http"] = "log"
    batch: int = 10               # messages claimed per round
    concurrency: int = 4          # messages in flight at once
    poll_s: float = 2.0           # how often the outbox is checked when nothing woke the dispatcher
    http: HttpSmsConfig = dataclasses.field(default_factory=HttpSmsConfig)

    def validate(self) -> None:
        if self.gateway == "http" and not self.http.url:
            raise ValueError("http: sms.gateway is http but sms.http.url is empty")
        if self.batch < 1:
            raise ValueError("batch: must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency: must be at least 1")
        if self.poll_s <= 0:
            raise ValueError("poll_s: must be positive")


def sms_config(settings: Settings) -> SmsConfig:
    return settings.section("sms", SmsConfig)


def open_gateway(settings: Settings) -> SmsGateway:
    """The configured gateway; an http gateway without ``$VOICEBOT_SMS_TOKEN`` is a config error."""
    cfg = sms_config(settings)
    if cfg.gateway == "log":
        return LogGateway()
    from voicebot.sms.http_gateway import TOKEN_ENV, HttpGateway

    if not os.environ.get(TOKEN_ENV):
        loc = settings.where.get("sms.gateway")
        raise ConfigError(f"the http gateway needs ${TOKEN_ENV} in the environment",
                          file=loc.file if loc else None, line=loc.line if loc else None, key="sms.gateway")
    h = cfg.http
    return HttpGateway(h.url, timeout_s=h.timeout_s, max_attempts=h.max_attempts,
                       backoff_base_s=h.backoff_base_s)


def dispatcher_for_settings(settings: Settings, store, gateway: SmsGateway | None = None) -> SmsDispatcher:
    cfg = sms_config(settings)
    return SmsDispatcher(store, gateway or open_gateway(settings), batch=cfg.batch,
                         concurrency=cfg.concurrency, poll_s=cfg.poll_s)
