"""AMI against the project's real Asterisk 22: queue status, doctor's check, UserEvents, rights."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import pytest

from tests.integration.telephony import cli
from voicebot.commands.doctor import check_ami
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.telephony.ami import AmiClient, log_off, open_session, queue_sentence

pytestmark = pytest.mark.integration

QUEUE = "borgerservice"
BOT_ACTIONS = ("Login", "Logoff", "Ping", "QueueSummary", "QueueStatus", "UserEvent")


@pytest.fixture(scope="module")
def running(asterisk):
    """The session's Asterisk (tests/integration/conftest.py starts it, and stops it at the end)."""


@pytest.fixture
async def client(running):
    ami = AmiClient(load_settings().asterisk)
    assert await ami.start(wait=3), "AMI login failed: run `voicebot doctor`"
    yield ami
    await ami.close()


async def test_queue_status_of_borgerservice(client):
    t0 = time.monotonic()
    info = await client.queue_status(QUEUE)
    assert time.monotonic() - t0 < 0.5
    assert info is not None and info.queue == QUEUE
    shown = cli(f"queue show {QUEUE}")
    assert info.callers == int(re.search(r"has (\d+) calls", shown).group(1))
    if "PJSIP/agent1)" in shown and "(Unavailable)" in shown:
        # agent1 is not registered: Asterisk counts an unavailable member as not logged in
        assert (info.logged_in, info.available) == (0, 0)
        assert info.expected_wait_s is None
        assert queue_sentence(info) == "Der er ingen medarbejdere ledige lige nu."
    assert await client.queue_status("no-such-queue") is None


async def test_doctor_ami_check_passes(running):
    check = await check_ami(load_settings())
    assert check.ok, check.detail


async def test_user_event_reaches_a_listener(client):
    cfg = load_settings().asterisk
    listener = await open_session(cfg, events="user")  # a second panoramisk Manager
    token = uuid.uuid4().hex
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_event(_manager, event) -> None:
        if event.get("Token") == token and not seen.done():
            seen.set_result(event)

    listener.register_event("UserEvent", on_event)
    try:
        await client.user_event("VoicebotTransfer", Queue=QUEUE, Token=token)
        event = await asyncio.wait_for(seen, 3)
    finally:
        await log_off(listener)
    assert event["UserEvent"] == "VoicebotTransfer" and event["Queue"] == QUEUE


def test_manager_conf_grants_what_the_bot_uses(running):
    """Every action the bot sends needs no write class beyond those manager.conf gives it."""
    conf = (PROJECT_ROOT / "asterisk" / "conf" / "manager.conf").read_text()
    section = conf.split("[voicebot]", 1)[1]
    write = set(re.search(r"^write=(.*)$", section, re.M).group(1).split(","))
    for action in BOT_ACTIONS:
        shown = cli(f"manager show command {action}")
        privilege = shown.split("[Privilege]", 1)[1].split()[0]
        needed = set() if privilege == "<none>" else set(privilege.split(",")) - {"all"}
        assert needed <= write, f"{action} needs write={privilege}"


async def test_the_bots_account_cannot_run_commands_originate_or_change_config(running):
    """A real AMI login (panoramisk) as the bot's user: actions beyond its rights are refused."""
    from voicebot.telephony.ami import send

    manager = await open_session(load_settings().asterisk)
    try:
        for action in ({"Action": "Command", "Command": "core show version"},
                       {"Action": "Originate", "Channel": "Local/1000@from-citizens", "Application": "Wait",
                        "Data": "1", "Async": "true"},
                       {"Action": "Redirect", "Channel": "PJSIP/softphone-00000000", "Context": "human-queue",
                        "Exten": "s", "Priority": "1"},
                       {"Action": "GetConfig", "Filename": "manager.conf"},
                       {"Action": "UpdateConfig", "SrcFilename": "manager.conf", "DstFilename": "manager.conf"},
                       {"Action": "DBGet", "Family": "voicebot", "Key": "enabled"},
                       {"Action": "Hangup", "Channel": "PJSIP/softphone-00000000"}):
            reply = await send(manager, action, 3)
            assert reply is not None, f"no reply to {action['Action']}"
            assert reply.response == "Error" and "ermission denied" in reply.message, \
                f"{action['Action']}: {reply.response} {reply.message}"
        pong = await send(manager, {"Action": "Ping"}, 3)  # what it may do still works
        assert pong is not None and pong.response == "Success"
    finally:
        await log_off(manager)
