"""An SMS provider reached by a JSON POST: ``{to, text, idempotency_key}`` with a bearer token.

The token comes only from ``$VOICEBOT_SMS_TOKEN``; it is kept out of every message, repr and
exception. 5xx answers, 408/429, timeouts and connection errors are retried with exponential
backoff; other 4xx answers are final. Every retry carries the same idempotency key (body and
``Idempotency-Key`` header), so a retry after a lost answer cannot send the message twice.
"""

from __future__ import annotations

import asyncio
import logging
import os

import aiohttp

from voicebot.privacy import redact
from voicebot.sms.gateway import SmsError
from voicebot.store.base import SmsMessage

log = logging.getLogger(__name__)

TOKEN_ENV = "VOICEBOT_SMS_TOKEN"
RETRY_STATUSES = {408, 429}


class HttpGateway:
    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 10.0,
                 max_attempts: int = 4, backoff_base_s: float = 0.5, backoff_max_s: float = 30.0) -> None:
        self.url = url
        self._token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s, self.backoff_max_s = backoff_base_s, backoff_max_s
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"HttpGateway(url={self.url!r}, max_attempts={self.max_attempts})"

    async def send(self, message: SmsMessage) -> None:
        if not message.number:
            raise SmsError(f"sms {message.id} has no recipient number", retryable=False)
        for attempt in range(1, self.max_attempts + 1):
            message.attempts += 1
            try:
                await self._post(message)
                return
            except SmsError as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    raise
                delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
                log.warning("sms send failed, retrying", extra={"sms": message.id, "attempt": attempt,
                                                                "error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)

    async def _post(self, message: SmsMessage) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self._token}", "Idempotency-Key": message.idempotency_key}
        body = {"to": message.number, "text": message.text, "idempotency_key": message.idempotency_key}
        try:
            async with self._session.post(self.url, json=body, headers=headers) as response:
                if response.status < 300:
                    return
                detail = redact((await response.text(errors="replace"))[:200])
                retryable = response.status >= 500 or response.status in RETRY_STATUSES
                raise SmsError(f"sms gateway answered {response.status}: {detail}", retryable=retryable)
        except asyncio.TimeoutError:
            raise SmsError("sms gateway timed out", retryable=True) from None
        except aiohttp.ClientError as exc:
            # the exception's own text names the host, never the headers; keep the chain out of logs
            raise SmsError(f"sms gateway unreachable: {type(exc).__name__}: {redact(str(exc))}",
                           retryable=True) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
