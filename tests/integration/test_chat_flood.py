"""A chat flood must not delay the phone: 300 concurrent chat clients hit the bot's web server
while a real SIP call starts; the greeting's first audio still reaches the caller within
200 ms of the answer, and every chat request gets 200 or 429 (never a 5xx, never a dropped
connection).

The flood runs in its own process, so the load is on the bot and not on the test's SIP caller.
Half the clients share one address (the rate limit answers them), half come from 150 addresses
that the bot's trusted-proxy setting lets through the rate limit (the chat's worker pool answers
those: real matching on fresh texts, or 429 "busy").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time

import pytest

from tests.integration.telephony import CLOSED_TIME, BotProcess, call, set_clock
from voicebot.sip.caller import CallScript

pytestmark = pytest.mark.integration

MAIN = "33663366"
CONCURRENT = 300
FIRST_AUDIO_MS = 200
FLOOD_SECONDS = 8.0
CALL_AFTER_S = 1.5  # into the flood: several waves have hit the bot when the INVITE goes out


@pytest.fixture(scope="module")
def chat_bot(asterisk, tmp_path_factory):
    proc = BotProcess(tmp_path_factory.mktemp("chatbot"), "chat:\n  trusted_proxies: [127.0.0.1]\n")
    proc.start()
    yield proc
    if proc.proc is not None:
        proc.stop()


async def _flood(port: int, start_at: float, seconds: float) -> dict:
    """``CONCURRENT`` clients from ``start_at`` (wall clock) for ``seconds``, each posting again
    0.2 s after its last answer: ~300 requests in flight at any moment, no lull between waves."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/api/chat"
    statuses: dict[int, int] = {}
    errors: list[str] = []
    counts = {"no_retry_after": 0, "requests": 0}
    end = start_at + seconds

    async def client(http: aiohttp.ClientSession, worker: int) -> None:
        headers = {"X-Forwarded-For": f"198.51.{100 + worker // 250}.{worker % 250}"} if worker % 2 else {}
        session_id, n = None, 0
        while time.time() < end:
            body = {"session_id": session_id, "message": f"Jeg har mistet mit pas, spørgsmål {worker}-{n}"}
            n += 1
            counts["requests"] += 1
            try:
                async with http.post(url, json=body, headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if resp.status == 200:
                        session_id = answer["session_id"]
                    elif resp.status == 429 and "Retry-After" not in resp.headers:
                        counts["no_retry_after"] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none may happen
                errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.2)

    await asyncio.sleep(max(0.0, start_at - time.time()))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        first = time.time()
        await asyncio.gather(*(client(http, w) for w in range(CONCURRENT)))
        last = time.time()
    return {"statuses": statuses, "errors": errors, **counts, "first": first, "last": last}


def flood(port: int, start_at: float, seconds: float) -> dict:
    return asyncio.run(_flood(port, start_at, seconds))


def test_a_chat_flood_does_not_delay_the_greeting_and_gets_only_200_or_429(chat_bot):
    set_clock(CLOSED_TIME)
    quiet = call(CallScript(MAIN, max_seconds=3.0))  # the same call without a flood, for comparison
    assert quiet.answered and quiet.first_audio_ms is not None
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        start_at = time.time() + 3.0  # the child process needs a moment to start
        flooding = pool.submit(flood, chat_bot.port, start_at, FLOOD_SECONDS)
        time.sleep(max(0.0, start_at + CALL_AFTER_S - time.time()))
        placed = time.time()
        report = call(CallScript(MAIN, max_seconds=3.0))
        ended = time.time()
        result = flooding.result(timeout=FLOOD_SECONDS + 60)
    set_clock(None)
    print(f"\nfirst audio: quiet {quiet.first_audio_ms} ms, during the flood {report.first_audio_ms} ms; "
          f"flood: {CONCURRENT} clients, {result['requests']} requests, statuses {result['statuses']}")
    assert result["first"] < placed and result["last"] > ended, "the flood did not span the call"
    assert not result["errors"], result["errors"][:5]
    assert set(result["statuses"]) <= {200, 429}, result["statuses"]
    assert result["statuses"].get(200, 0) > 0 and result["statuses"].get(429, 0) > 0, result["statuses"]
    assert result["no_retry_after"] == 0
    assert report.answered and report.first_audio_ms is not None
    assert report.first_audio_ms <= FIRST_AUDIO_MS, (report.first_audio_ms, quiet.first_audio_ms)
    log = chat_bot.log()
    assert "chat turn failed" not in log and "Error handling request" not in log
    assert chat_bot.health().get("ari_connected") is True
