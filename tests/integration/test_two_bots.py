"""Two bot instances on one Asterisk, sharing one PostgreSQL store.

Each `voicebot serve` registers its own ARI app (asterisk.app); the dialplan takes the apps in
VOICEBOT_APPS in turn and falls over to the next when one is not connected (dialplans/20-voicebot.conf).
A killed instance's live call takes the dead-man route to a human; new calls go to the other.
Real Asterisk, real SIP calls, real PostgreSQL; the words come from the declared test recognizer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.telephony import OPEN_TIME, BotProcess, cli, set_clock, sip_password, wait_for
from tests.integration.test_phone_conversation import SHORT_GREETING, _scripted, _tone
from voicebot.config import secret
from voicebot.sip.caller import AgentPhone, CallScript, place_call
from voicebot.sip.script import Step

pytestmark = pytest.mark.integration

APPS = ("voicebot", "voicebot-2")
# enough to show which instance took the call and that it recorded it in the shared store
SHORT = [Step(wait=2.0), Step(hangup=True)]


def _started(bot: BotProcess) -> int:
    return bot.log().count("'call started'")


@pytest.fixture
def two_bots(asterisk, pg_schema, tmp_path):
    store = f'store:\n  backend: postgresql\n  dsn: "{pg_schema.dsn()}"\n'
    env = {"VOICEBOT_ALLOW_TEST_RECOGNIZER": "1", "VOICEBOT_PG_PASSWORD": pg_schema.password}
    bots = []
    for app in APPS:
        (tmp_path / app).mkdir()
        bots.append(BotProcess(tmp_path / app, "speech:\n  asr:\n    engine: script\n" + SHORT_GREETING,
                               env=env, app=app, store=store))
    cli(f"dialplan set global VOICEBOT_APPS {'&'.join(APPS)}")
    cli("dialplan set global VOICEBOT_TURN 0")  # the next call goes to the second app
    try:
        starting = [threading.Thread(target=bot.start) for bot in bots]  # both load at once
        for t in starting:
            t.start()
        for t in starting:
            t.join()
        for bot in bots:
            assert bot.proc is not None and bot.ari_connected(), f"{bot.app} did not start:\n{bot.log()}"
        yield bots, pg_schema
    finally:
        cli("dialplan set global VOICEBOT_APPS voicebot")  # as dialplans/00-globals.conf has it
        for bot in bots:
            bot.stop()
        # a killed instance's bridge waits for that instance to come back (its reconcile deletes it);
        # this one will not: delete it so the next tests start from an empty Asterisk
        for bridge in _ari("GET", "/applications/voicebot-2").get("bridge_ids", []):
            _ari("DELETE", f"/bridges/{bridge}")


def _ari(method: str, path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:8088/ari{path}", method=method)
    token = base64.b64encode(f"voicebot:{secret('ARI_PASSWORD')}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise
    return json.loads(body) if body else {}


def _records(pg_schema, refs: list[str]):
    from voicebot.store.postgres import PostgresStore

    store = PostgresStore(pg_schema.dsn(), password=pg_schema.password)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = {ref: store.by_ref(ref) for ref in refs}
            if all(f and f[0].ended_at for f in found.values()):
                return {ref: f[0] for ref, f in found.items()}
            time.sleep(0.2)
        raise AssertionError(f"records not finished in the shared store: {found}")
    finally:
        store.close()


def test_two_instances_share_calls_and_store_and_a_killed_one_hands_over(two_bots):
    (first, second), pg_schema = two_bots
    set_clock(OPEN_TIME)
    for bot in (first, second):
        health = bot.health()
        assert health["ready"] and health["instance"]["app"] == bot.app
        assert health["instance"]["event_loop"] == "uvloop"  # run_loop in voicebot/eventloop.py
        assert health["instance"]["store"]["backend"] == "postgresql" and "password" not in str(health)

    # spread: two calls in a row land on different instances, both recorded in the one store
    refs = []
    for _ in range(2):
        ref, report = asyncio.run(_scripted(SHORT, "+4520123456", 40.0))
        assert report.answered
        refs.append(ref)
    assert (_started(first), _started(second)) == (1, 1), "calls were not spread over both instances"
    records = _records(pg_schema, refs)
    assert all(r.outcome == "abandoned" and r.turns for r in records.values())

    # a live call on the second instance when it is killed: the dead-man timer takes it to a human
    box: dict = {}

    async def live_call():
        agent = await AgentPhone("agent1", sip_password("agent1"), audio=_tone()).start()
        box["agent"] = agent
        try:
            box["report"] = await place_call(CallScript("33663366", max_seconds=30, quiet_hangup_s=60),
                                             "softphone", sip_password())
        finally:
            await agent.close()

    caller = threading.Thread(target=lambda: asyncio.run(live_call()))
    caller.start()
    wait_for(lambda: _started(second) == 2, 10, "the third call to reach the second instance")
    time.sleep(1.0)
    second.proc.send_signal(signal.SIGKILL)
    second.proc.wait(5)
    killed = time.monotonic()
    second._log.close()
    second.proc = None  # gone: the fixture's stop() has nothing left to stop
    wait_for(lambda: bool(box.get("agent") and box["agent"].rung_at), 20, "the agent's phone to ring")
    assert box["agent"].rung_at[0] - killed <= 8.0 + 4.0  # the dead-man window plus the human route's line
    caller.join(40)
    assert box["report"].answered and box["agent"].answered

    # new calls: the dead instance is skipped at once, the live one answers them all
    before = _started(first)
    ref, report = asyncio.run(_scripted(SHORT, "+4520123456", 40.0))
    assert report.answered and _started(first) == before + 1
    assert _records(pg_schema, [ref])[ref].turns  # the bot took it (no fail-open) and recorded it
