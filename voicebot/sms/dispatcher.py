"""The outbox worker: claims queued messages and hands them to the gateway, off the event loop.

Queueing (in the store) and sending (here) are separate so a caller's SMS survives a gateway
outage or a restart: the row stays until it is sent, given up, or purged.
"""

from __future__ import annotations

import asyncio
import logging

from voicebot.privacy import danish_mobile
from voicebot.sms.gateway import SmsDeferred, SmsError, SmsGateway
from voicebot.store.base import SmsMessage, Store

log = logging.getLogger(__name__)


def queue_for_caller(store: Store, conversation_id: str | None, caller: str | None, text: str,
                     article_id: str | None = None) -> SmsMessage | None:
    """Queue ``text`` for the caller when the caller id is a Danish mobile number (else None).
    Blocking: call it via ``asyncio.to_thread``; then ``SmsDispatcher.wake()``."""
    number = danish_mobile(caller or "")
    if number is None:
        log.info("sms not queued: caller id is not a Danish mobile number",
                 extra={"conversation": conversation_id})
        return None
    return store.queue_sms(conversation_id, number, text, article_id)


class SmsDispatcher:
    """Sends what the outbox holds. ``run()`` is the long-lived task; ``drain_once()`` one round."""

    def __init__(self, store: Store, gateway: SmsGateway, *, batch: int = 10, concurrency: int = 4,
                 poll_s: float = 2.0, lease_s: float = 120.0) -> None:
        self.store, self.gateway = store, gateway
        self.batch, self.poll_s, self.lease_s = batch, poll_s, lease_s
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A message was queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Send until cancelled. Messages held by the log gateway become due again at start, so a
        gateway configured later sends them."""
        if not getattr(self.gateway, "holds_messages", False):
            await asyncio.to_thread(self.store.release_deferred_sms)
        while True:
            try:
                sent = await self.drain_once()
            except Exception:  # task boundary: the outbox must keep going after a store hiccup
                log.exception("sms dispatch round failed")
                sent = 0
            if sent < self.batch:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    pass

    async def drain_once(self) -> int:
        """Claim one batch and try each message once (with the gateway's own retries);
        returns how many were claimed."""
        claimed = await asyncio.to_thread(self.store.claim_sms, self.batch, self.lease_s)
        if claimed:
            async with asyncio.TaskGroup() as group:
                for message in claimed:
                    group.create_task(self._deliver(message))
        return len(claimed)

    async def _deliver(self, message: SmsMessage) -> None:
        async with self._limit:
            try:
                await self.gateway.send(message)
            except SmsDeferred as exc:
                await asyncio.to_thread(self.store.defer_sms, message.id, exc.retry_after_s,
                                        message.attempts)
                return
            except SmsError as exc:
                log.warning("sms given up", extra={"sms": message.id, "attempts": message.attempts,
                                                   "retryable": exc.retryable, "error": str(exc)})
                await asyncio.to_thread(self.store.mark_sms_failed, message.id, str(exc), message.attempts)
                return
            await asyncio.to_thread(self.store.mark_sms_sent, message.id, message.attempts)
            log.info("sms sent", extra={"sms": message.id, "attempts": message.attempts,
                                        "conversation": message.conversation_id})
