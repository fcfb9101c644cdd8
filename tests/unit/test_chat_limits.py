"""The chat's limits on their own: the session store, the rate limiter, who a client is, the
worker pool, and the ``chat:`` config that sets them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from voicebot.chat.limits import ChatBusy, RateLimiter, WorkPool, client_key, parse_networks
from voicebot.chat.service import ChatConfig
from voicebot.chat.sessions import Session, SessionStore
from voicebot.config import load_settings
from voicebot.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new(session_id: str, client: str, now: float) -> Session:
    return Session(session_id, client, conversation=None, seen=now)


# ---- sessions ---------------------------------------------------------------------------------

def store(clock, max_sessions=10, per_client=3, idle=1800.0, active=300.0) -> SessionStore:
    return SessionStore(max_sessions, per_client, idle, active, clock=clock)


def test_ids_are_issued_by_the_server_and_made_up_ones_start_a_new_session():
    s = store(Clock())
    first = s.open(None, "a", new)
    assert first.new and len(first.session.id) >= 22  # 128 random bits
    again = s.open(first.session.id, "a", new)
    assert not again.new and again.session is first.session
    made_up = s.open("my-own-id", "a", new)
    assert made_up.new and made_up.session.id != "my-own-id"
    assert s.open("my-own-id", "a", new).session.id != made_up.session.id  # never stored under it


def test_a_flood_of_new_sessions_from_one_client_only_replaces_its_own():
    clock = Clock()
    s = store(clock, max_sessions=10, per_client=3)
    citizen = s.open(None, "citizen", new).session
    ids = []
    for _ in range(100):
        clock.now += 0.01
        opened = s.open(None, "flooder", new)
        ids.append(opened.session.id)
        assert all(d.client == "flooder" for d in opened.dropped)
    assert s.count("flooder") == 3 and len(s) == 4
    assert s.open(ids[-1], "flooder", new).session.id == ids[-1]  # its newest ones live on
    assert not s.open(citizen.id, "citizen", new).new


def test_a_full_store_evicts_only_sessions_idle_longer_than_active_seconds():
    clock = Clock()
    s = store(clock, max_sessions=3, per_client=3, active=300)
    old = s.open(None, "a", new).session
    clock.now += 200
    b = s.open(None, "b", new).session
    c = s.open(None, "c", new).session
    clock.now += 10  # a: idle 210 s, still active
    refused = s.open(None, "d", new)
    assert refused.session is None and refused.dropped == []
    clock.now += 100  # a: idle 310 s
    opened = s.open(None, "d", new)
    assert opened.session is not None and [x.id for x in opened.dropped] == [old.id]
    assert not s.open(b.id, "b", new).new and not s.open(c.id, "c", new).new
    assert s.open(old.id, "a", new).new  # its citizen starts again under a new id


def test_idle_sessions_expire_and_are_handed_back_for_closing():
    clock = Clock()
    s = store(clock, idle=60, active=30)
    a = s.open(None, "a", new).session
    clock.now += 30
    b = s.open(None, "b", new).session
    clock.now += 31  # a idle 61 s, b 31 s
    opened = s.open(b.id, "b", new)
    assert [x.id for x in opened.dropped] == [a.id] and not opened.new
    assert s.count("a") == 0 and len(s) == 1
    assert s.drop(b.id) is b and s.drop(b.id) is None and len(s) == 0


def test_clear_returns_every_session():
    s = store(Clock())
    opened = [s.open(None, c, new).session for c in "abc"]
    assert sorted(x.id for x in s.clear()) == sorted(x.id for x in opened) and len(s) == 0


# ---- rate limit -------------------------------------------------------------------------------

def test_rate_limit_allows_a_burst_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=10, clock=clock)
    assert [limiter.check("a") for _ in range(10)] == [0.0] * 10
    assert limiter.check("a") == pytest.approx(0.5)
    assert limiter.check("b") == 0.0  # another client is not affected
    clock.now += 0.5
    assert limiter.check("a") == 0.0 and limiter.check("a") > 0


def test_rate_limiter_forgets_clients_whose_bucket_refilled():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=10, clock=clock)
    for i in range(1000):
        limiter.check(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 1000
    clock.now += 5.0  # burst / rate: every bucket is full again
    limiter.check("someone")
    assert len(limiter) == 1


# ---- who the client is ------------------------------------------------------------------------

PROXY = parse_networks(["10.0.0.0/8"])


@pytest.mark.parametrize("peer, forwarded, trusted, key", [
    ("203.0.113.5", [], [], "203.0.113.5"),
    ("203.0.113.5", ["198.51.100.7"], [], "203.0.113.5"),  # not behind a trusted proxy: ignored
    ("10.1.2.3", ["198.51.100.7"], PROXY, "198.51.100.7"),
    ("10.1.2.3", ["1.1.1.1, 198.51.100.7, 10.9.9.9"], PROXY, "198.51.100.7"),  # forged first hop ignored
    ("10.1.2.3", ["1.1.1.1", "198.51.100.7"], PROXY, "198.51.100.7"),  # two headers
    ("10.1.2.3", ["garbage"], PROXY, "10.1.2.3"),
    ("10.1.2.3", [], PROXY, "10.1.2.3"),
    ("2001:db8:1:2:aaaa::1", [], [], "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", [], [], "198.51.100.7"),
    (None, [], [], "unknown"),
])
def test_client_key(peer, forwarded, trusted, key):
    assert client_key(peer, forwarded, trusted) == key


# ---- the pool ---------------------------------------------------------------------------------

async def test_pool_runs_on_its_own_threads_and_turns_away_at_once_when_full():
    pool = WorkPool(workers=1, max_waiting=2, wait_seconds=5.0)
    release = threading.Event()
    try:
        assert (await pool.run(lambda: threading.current_thread().name)).startswith("chat")
        blocker = asyncio.ensure_future(pool.run(release.wait))
        queued = [asyncio.ensure_future(pool.run(lambda: 1)) for _ in range(2)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(ChatBusy, match="pool full"):
            await pool.run(lambda: 1)
        assert time.monotonic() - started < 0.05
        release.set()
        assert await blocker and await asyncio.gather(*queued) == [1, 1]
    finally:
        release.set()
        pool.close()


async def test_pool_bounds_the_wait_and_a_cancelled_request_keeps_its_thread_until_done():
    pool = WorkPool(workers=1, max_waiting=5, wait_seconds=0.1)
    release = threading.Event()
    try:
        blocker = asyncio.ensure_future(pool.run(release.wait))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(ChatBusy, match="within 0.1 s"):
            await pool.run(lambda: 1)
        assert time.monotonic() - started < 0.5
        blocker.cancel()  # the client went away: the thread still works until the job ends
        await asyncio.sleep(0.02)
        with pytest.raises(ChatBusy):
            await pool.run(lambda: 1)
        release.set()
        await asyncio.sleep(0.05)
        assert await pool.run(lambda: 2) == 2 and pool.waiting == 0
    finally:
        release.set()
        pool.close()


# ---- config -----------------------------------------------------------------------------------

def test_chat_defaults():
    c = load_settings().section("chat", ChatConfig)
    assert (c.rate_burst, c.rate_per_second, c.workers, c.max_sessions_per_client) == (10, 2.0, 1, 50)
    assert c.trusted_proxies == []


@pytest.mark.parametrize("yaml, key, fragment", [
    ("chat:\n  trusted_proxies: [10.0.0.0/8, proxy.local]\n", "chat.trusted_proxies", "proxy.local"),
    ("chat:\n  workers: 0\n", "chat.workers", "at least 1"),
    ("chat:\n  rate_per_second: 0\n", "chat.rate_per_second", "positive"),
    ("chat:\n  rate_burst: many\n", "chat.rate_burst", "whole number"),
    ("chat:\n  max_message_chars: 5000\n", "chat.max_message_chars", "between 10 and 1000"),
    ("chat:\n  session_active_seconds: 4000\n", "chat.session_active_seconds", "session_idle_seconds"),
])
def test_chat_config_errors_name_file_line_and_key(tmp_path, yaml, key, fragment):
    path = tmp_path / "site.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as err:
        load_settings(path).section("chat", ChatConfig)
    e = err.value
    assert (e.file, e.key) == (str(path), key) and e.line == 2 and fragment in str(e), str(e)
