"""The real Asterisk runs with least privilege and keeps no callers' numbers.

* Asterisk runs as an unprivileged user, without ``live_dangerously``; the dialplan still reads
  the ops switches (AstDB) after the bot hands a call back.
* Every SIP account has its own password: one account's password opens no other account.
* No CDR, CEL or queue_log: after real calls (to the bot, and through the human queue to an
  agent) no file Asterisk writes holds the caller's number.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.telephony import (CLOSED_TIME, OPEN_TIME, PBX, cli, set_clock, sip_password,
                                         wait_for)
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.sip.caller import RATE, AgentPhone, CallScript, place_call

pytestmark = pytest.mark.integration

MAIN = "33663366"
CHROOT = PROJECT_ROOT / "asterisk" / "chroot"
CONSOLE_LOG = PROJECT_ROOT / "asterisk" / "run" / "asterisk.log"
MOBILE = "+4520123456"
NUMBER_FORMS = ("+4520123456", "4520123456", "20123456", "20 12 34 56")


def in_chroot(path: str) -> Path:
    """The host path of the chroot's ``path``, its absolute symlinks resolved inside the chroot
    (the chroot's /var/run -> /run is not the host's /run)."""
    p = CHROOT
    for part in Path(path).parts[1:]:
        p = p / part
        while p.is_symlink():
            target = os.readlink(p)
            p = CHROOT / target.lstrip("/") if target.startswith("/") else p.parent / target
    return p


def asterisk_pid() -> int:
    return int((PROJECT_ROOT / "asterisk" / "run" / "asterisk.pid").read_text())


def console_since(offset: int) -> str:
    with open(CONSOLE_LOG, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def console_size() -> int:
    return CONSOLE_LOG.stat().st_size if CONSOLE_LOG.exists() else 0


def _tone() -> np.ndarray:
    return (np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE) * 8000).astype(np.int16)


def _pai(number: str) -> list[tuple[str, str]]:
    return [("P-Asserted-Identity", f"<sip:{number}@127.0.0.1>")]


async def _call_with_agent(script: CallScript, agent: str = "agent1"):
    phone = await AgentPhone(agent, sip_password(agent), audio=_tone()).start()
    try:
        report = await place_call(script, "softphone", sip_password("softphone"))
    finally:
        await asyncio.sleep(0.3)
        await phone.close()
    return phone, report


# ---- Asterisk itself -----------------------------------------------------------------------------

def test_asterisk_runs_as_an_unprivileged_user(asterisk):
    status = Path(f"/proc/{asterisk_pid()}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uids = [int(x) for x in fields["Uid"].split()]  # real, effective, saved, filesystem
    gids = [int(x) for x in fields["Gid"].split()]
    assert all(uids) and all(gids), f"Asterisk runs with uid {uids} gid {gids}"
    passwd = (CHROOT / "etc" / "passwd").read_text().splitlines()
    assert f"asterisk:x:{uids[0]}:" in "\n".join(passwd)
    # the id is not another account's on the host (uid 101 is postgres on some hosts)
    host = subprocess.run(["getent", "passwd", str(uids[0])], capture_output=True, text=True).stdout
    assert host == "" or host.startswith("asterisk:"), host
    # ops tools keep working through the CLI socket (owned by the asterisk user, mode 0660)
    assert subprocess.run([str(PBX), "status"], capture_output=True).returncode == 0
    assert "Asterisk 22" in cli("core show version")
    ctl = in_chroot("/var/run/asterisk/asterisk.ctl")
    assert ctl.stat().st_uid == uids[0] and oct(ctl.stat().st_mode & 0o777) == "0o660"


def test_asterisk_runs_at_realtime_priority_in_every_thread(asterisk):
    """asterisk/pbx passes -p (PBX_REALTIME=1, the default): the bridge threads that relay the
    bot's voice must not wait behind speech recognition (README, Load)."""
    import os

    pid = asterisk_pid()
    policies = {}
    for t in (int(t) for t in os.listdir(f"/proc/{pid}/task")):
        try:
            policies[t] = os.sched_getscheduler(t)
        except ProcessLookupError:
            pass  # a short-lived thread ended meanwhile
    assert set(policies.values()) == {os.SCHED_RR}, policies
    assert os.sched_getparam(pid).sched_priority > 0


def test_asterisk_cannot_change_its_own_configuration(asterisk):
    conf = CHROOT / "etc" / "asterisk" / "pjsip.conf"
    assert conf.stat().st_uid == 0 and oct(conf.stat().st_mode & 0o777) == "0o640"


PROBE_APP = "escalation-probe"  # not "voicebot...": tests look for the bot by that name


async def _probe_db_through_ari() -> dict:
    """Put an ExternalMedia channel into a Stasis app of our own and try AstDB through ARI."""
    from voicebot.errors import AriError
    from voicebot.telephony.ari import AriClient

    a = load_settings().asterisk
    ari = AriClient(a.ari_url, a.ari_user, a.ari_password, PROBE_APP)
    events = ari.events()
    out: dict = {}
    try:
        await asyncio.wait_for(events.__anext__(), 5)  # connected: the app exists
        channel = await ari.request("POST", "/channels/externalMedia", params={
            "app": PROBE_APP, "external_host": "127.0.0.1:9", "format": "ulaw"})
        path = f"/channels/{channel['id']}/variable"
        try:
            out["exists"] = (await ari.request("GET", path, params={"variable": "DB_EXISTS(voicebot/probe)"}))["value"]
            try:
                out["read"] = (await ari.request("GET", path, params={"variable": "DB(voicebot/probe)"}))["value"]
            except AriError as exc:
                out["read"] = f"refused: {exc}"
            try:
                await ari.request("POST", path, params={"variable": "DB(voicebot/probe)", "value": "changed"})
            except AriError:
                pass
        finally:
            await ari.request("DELETE", f"/channels/{channel['id']}")
    finally:
        await events.aclose()
        await ari.close()
    return out


def test_escalation_protection_is_on(asterisk):
    """No live_dangerously: an ARI client cannot read or write AstDB through DB() on a channel;
    DB_EXISTS (not an escalating function, and what the dialplan uses) still reads it."""
    cli("database put voicebot probe secret-value")
    try:
        seen = asyncio.run(_probe_db_through_ari())
        stored = cli("database get voicebot probe")
    finally:
        cli("database del voicebot probe")
    assert seen["exists"] == "1"
    assert "secret-value" not in seen["read"], seen
    assert "secret-value" in stored and "changed" not in stored
    rendered = (CHROOT / "etc" / "asterisk" / "asterisk.conf").read_text()
    assert not any(line.split(";")[0].strip().startswith("live_dangerously") for line in rendered.splitlines())


def test_ops_hours_override_is_honoured_after_the_bot_hands_back(bot):
    """The call's thread may not run DB() once ARI has set a variable on it (Asterisk's
    res/stasis/control.c); the dialplan reads AstDB with DB_EXISTS, so ops' "open" still holds
    after the hand-back: closed by the clock, forced open, bot stopped mid-call -> the agent."""
    set_clock(CLOSED_TIME)
    cli("database put voicebot hours open")
    offset = console_size()
    box = {}
    try:
        t = threading.Thread(target=lambda: box.setdefault("r", asyncio.run(
            _call_with_agent(CallScript(MAIN, max_seconds=14)))))
        before = bot.log().count("'call started'")
        t.start()
        wait_for(lambda: bot.log().count("'call started'") > before, 10, "the bot to take the call")
        time.sleep(1.0)  # mid-greeting
        bot.stop(signal.SIGTERM)
        t.join(30)
    finally:
        cli("database del voicebot hours")
        if bot.proc is None:
            bot.start()
    agent, report = box["r"]
    assert "'call handed back to the dialplan'" in bot.log()
    assert report.answered and len(agent.answered) == 1, "forced open, yet the agent was not rung"
    log = console_since(offset)
    assert "Dangerous function" not in log and "Privilege escalation protection disabled" not in log


# ---- SIP accounts --------------------------------------------------------------------------------

def rendered_auths() -> dict[str, str]:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, comment_prefixes=(";",),
                                          inline_comment_prefixes=(";",))
    text = (CHROOT / "etc" / "asterisk" / "pjsip.conf").read_text()
    auths: dict[str, str] = {}
    # sections repeat a name with different templates ([agent1](phone), [agent1](auth)): split by hand
    for block in text.split("\n["):
        head, _, body = block.partition("\n")
        if "(auth)" not in head or "(!)" in head:
            continue
        parser.read_string("[x]\n" + body)
        auths[parser["x"]["username"]] = parser["x"]["password"]
        parser.remove_section("x")
    return auths


def test_each_sip_account_has_its_own_password(asterisk):
    auths = rendered_auths()
    assert {"softphone", "agent1", "agent-pladsanvisning"} <= set(auths)
    assert len(set(auths.values())) == len(auths), "two SIP accounts share a password"
    for user, password in auths.items():
        assert len(password) >= 16 and "@@" not in password
        assert password == sip_password(user)


def test_one_accounts_password_opens_no_other_account(asterisk):
    wrong = asyncio.run(place_call(CallScript("2000", max_seconds=3), "softphone", sip_password("agent1")))
    assert not wrong.answered and wrong.status in (401, 403, 407), (wrong.status, wrong.reason)
    right = asyncio.run(place_call(CallScript("2000", max_seconds=3), "softphone", sip_password("softphone")))
    assert right.answered


# ---- no call records -----------------------------------------------------------------------------

def asterisk_files() -> dict[str, bytes]:
    out = {}
    for sub in ("var/log/asterisk", "var/lib/asterisk", "var/spool/asterisk"):
        for path in (CHROOT / sub).rglob("*"):
            if path.is_file() and not path.is_symlink() and "sounds" not in path.parts:
                out[str(path.relative_to(CHROOT))] = path.read_bytes()
    return out


def test_no_file_asterisk_writes_holds_the_callers_number(bot):
    """A call to the bot and one through the human queue to an agent, from a mobile number:
    afterwards neither var/log/asterisk (no CDR CSV, no queue_log), AstDB, the spool nor the
    console log holds the number."""
    set_clock(OPEN_TIME)
    offset = console_size()
    to_bot = asyncio.run(place_call(CallScript(MAIN, max_seconds=6, headers=_pai(MOBILE)), "softphone",
                                    sip_password("softphone")))
    assert to_bot.answered
    agent, to_queue = asyncio.run(_call_with_agent(CallScript("2000", max_seconds=10, headers=_pai(MOBILE))))
    assert to_queue.answered and len(agent.answered) == 1, "the queue call did not reach the agent"
    time.sleep(1.0)  # hang-up processing (a CDR would be written now)
    places = asterisk_files()
    places["asterisk/run/asterisk.log (this test)"] = console_since(offset).encode()
    assert not any(name.startswith("var/log/asterisk/cdr") or name.endswith("queue_log") for name in places)
    for name, data in places.items():
        for form in NUMBER_FORMS:
            assert form.encode() not in data, f"{form} found in {name}"
