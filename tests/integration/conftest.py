from __future__ import annotations

import fcntl
import sys

import pytest

from tests.integration.telephony import PBX, BotProcess, bot_registered, cli, pbx, pbx_running
from voicebot.config import PROJECT_ROOT


@pytest.fixture(scope="session")
def asterisk():
    """The project's real Asterisk 22 (installed by `make setup`), started if it is not running."""
    chroot = PROJECT_ROOT / "asterisk" / "chroot" / "usr" / "sbin" / "asterisk"
    if not chroot.exists():
        pytest.fail(f"Asterisk is not installed: run `make setup` (or `{PBX} install`) first")
    # Asterisk's ports are fixed (127.0.0.1:5060/8088/5038): test runs of several clones on one
    # machine take turns on it instead of stopping each other's PBX
    lock = open("/tmp/kk-voicebot-asterisk.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("waiting for another test run to finish with Asterisk ...", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    started = not pbx_running()
    if started:
        pbx("start")
    if bot_registered():
        pytest.fail("another voicebot is connected to this Asterisk (is `make run` running?): stop it first")
    cli("database deltree voicebot")
    yield
    cli("database deltree voicebot")
    if started:
        pbx("stop")
    lock.close()


@pytest.fixture(scope="module")
def bot(asterisk, tmp_path_factory):
    proc = BotProcess(tmp_path_factory.mktemp("bot"))
    proc.start()
    yield proc
    if proc.proc is not None:
        proc.stop()
