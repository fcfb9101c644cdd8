"""How an SMS leaves the bot: a one-method gateway interface, its errors, and the log gateway.

A gateway delivers one outbox message or raises ``SmsError``; ``retryable`` says whether the
same message may go through later. Retries always reuse the message's idempotency key, so a
provider that honours it never delivers twice.
"""

from __future__ import annotations

import logging
from typing import Protocol

from voicebot.errors import VoicebotError
from voicebot.store.base import SmsMessage

log = logging.getLogger(__name__)


class SmsError(VoicebotError):
    """Sending failed. The message never contains the recipient's number or the API token."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class SmsDeferred(SmsError):
    """The gateway did not send and the message should stay queued (e.g. the log gateway)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retryable=True)
        self.retry_after_s = retry_after_s


class SmsGateway(Protocol):
    async def send(self, message: SmsMessage) -> None:
        """Deliver ``message`` (adding 1 to ``message.attempts`` per try) or raise ``SmsError``."""
        ...

    async def close(self) -> None: ...


class LogGateway:
    """The default when no SMS provider is configured: nothing is sent and nothing is lost.

    Messages stay queued (a real gateway configured later sends them); each is logged once per
    ``hold_s`` by its outbox id, never by number.
    """

    holds_messages = True  # the dispatcher must not release what this gateway holds back

    def __init__(self, hold_s: float = 3600.0) -> None:
        self.hold_s = hold_s

    async def send(self, message: SmsMessage) -> None:
        log.info("sms kept in the outbox (sms.gateway is log)",
                 extra={"sms": message.id, "conversation": message.conversation_id})
        raise SmsDeferred("no SMS gateway configured", retry_after_s=self.hold_s)

    async def close(self) -> None:
        return None
