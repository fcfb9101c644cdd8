"""What keeps a chat flood from hurting anyone else: who the client is, a per-client rate limit,
and the chat's own small pool of worker threads.

The phone shares this process and its event loop (RTP pacing) and the default executor (its
turns run in ``asyncio.to_thread``). So chat work never runs on the loop and never in the default
executor: it runs on ``workers`` threads of its own, and a request that cannot get one within
``wait_seconds`` (or finds ``max_waiting`` requests already queued) is turned away at once with
``ChatBusy`` instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from voicebot.errors import VoicebotError

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ChatBusy(VoicebotError):
    """The chat cannot take this request now (pool full, session store full, turn in progress)."""

    retryable = True

    def __init__(self, reason: str, retry_after: float = 2.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def parse_networks(entries: Sequence[str]) -> list[Network]:
    """``trusted_proxies`` entries: addresses or networks (``10.0.0.0/8``); ValueError names a bad one."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or network") from None
    return out


def client_key(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """Who a request is from, for limits: the peer address, or, when the peer is a trusted proxy,
    the nearest address in ``X-Forwarded-For`` that is not one (a client can prepend anything, so
    only what our own proxies appended counts). IPv6 clients count per /64, the block one home
    or phone gets, so rotating addresses inside it does not multiply the limits."""
    address = _address(peer)
    if address is None:
        return peer or "unknown"
    if trusted and _trusted(address, trusted):
        hops = [h.strip() for value in forwarded_for for h in value.split(",")]
        for hop in reversed(hops):
            forwarded = _address(hop)
            if forwarded is None:
                break  # garbage: stop at the last address our proxies vouch for
            address = forwarded
            if not _trusted(forwarded, trusted):
                break
    if address.version == 6:
        if address.ipv4_mapped is not None:  # ::ffff:1.2.3.4 on a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text) if text else None
    except ValueError:
        return None


def _trusted(address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


class RateLimiter:
    """A token bucket per client: ``burst`` requests at once, then ``rate`` per second.

    Runs on the event loop only (no lock). Buckets are kept in least-recently-used order and a
    bucket that has refilled completely is forgotten, so memory follows the clients seen in the
    last ``burst / rate`` seconds, not every address ever seen."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, client: str) -> float:
        """Take one request from ``client``'s bucket: 0.0 when allowed, else seconds to wait."""
        now = self.clock()
        self._forget_full(now)
        tokens, stamp = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        return wait

    def _forget_full(self, now: float) -> None:
        while self._buckets:
            client, (tokens, stamp) = next(iter(self._buckets.items()))
            if tokens + (now - stamp) * self.rate < self.burst:
                return
            del self._buckets[client]


class WorkPool:
    """``workers`` threads for the chat, with a bounded queue and a bounded wait for a thread."""

    def __init__(self, workers: int, max_waiting: int, wait_seconds: float) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self.wait_seconds = wait_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="chat")
        self._free = asyncio.Semaphore(workers)
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a chat thread; ``ChatBusy`` when none is free soon enough."""
        if self._free.locked() and self._waiting >= self.max_waiting:
            raise ChatBusy(f"chat pool full ({self.workers} working, {self._waiting} waiting)")
        self._waiting += 1
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._free.acquire()
        except TimeoutError:
            raise ChatBusy(f"no chat worker free within {self.wait_seconds:g} s") from None
        finally:
            self._waiting -= 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        # the thread is released when the work ends, also if this request is cancelled meanwhile
        # (a thread cannot be stopped): so never more than ``workers`` jobs exist at once
        future.add_done_callback(lambda _: self._free.release())
        return await asyncio.shield(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
