"""Helpers for real-Asterisk tests: the PBX, a bot process, the dialplan clock, SIP calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo


from voicebot.config import PROJECT_ROOT, sip_password as _sip_password, sip_secret_name
from voicebot.sip.caller import CallReport, CallScript, place_call

PBX = PROJECT_ROOT / "asterisk" / "pbx"
VOICEBOT = Path(sys.executable).with_name("voicebot")
CPH = ZoneInfo("Europe/Copenhagen")

# Fixed instants for the hours logic (never the wall clock): a Monday at noon is open
# (Mon 11-17), a Saturday at noon is closed.
OPEN_TIME = datetime(2026, 11, 30, 12, 0, tzinfo=CPH)
CLOSED_TIME = datetime(2026, 11, 28, 12, 0, tzinfo=CPH)


def cli(command: str) -> str:
    return subprocess.run([str(PBX), "cli", command], capture_output=True, text=True, check=True).stdout


def pbx(action: str) -> None:
    subprocess.run([str(PBX), action], check=True, capture_output=True)


def pbx_running() -> bool:
    return subprocess.run([str(PBX), "status"], capture_output=True).returncode == 0


def bot_registered(app: str = "voicebot") -> bool:
    """ARI lists the app ``app`` (exactly: voicebot-2 is not voicebot)."""
    try:
        return app in {line.strip() for line in cli("ari show apps").splitlines()}
    except subprocess.CalledProcessError:
        return False


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def set_clock(when: datetime | None) -> None:
    """Make the dialplan's opening-hours logic see ``when`` (None: the real clock)."""
    if when is None:
        cli("database del voicebot clock")
    else:
        cli(f"database put voicebot clock {int(when.timestamp())}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BotProcess:
    """``voicebot serve`` as a real subprocess, with its log captured."""

    def __init__(self, workdir: Path, extra_config: str = "", env: dict[str, str] | None = None,
                 app: str = "voicebot", store: str = "") -> None:
        """``store``: the whole ``store:`` section (default: a SQLite file in ``workdir``)."""
        self.workdir = workdir
        self.app = app
        self.port = free_port()
        self.admin_port = free_port()
        self.config = workdir / "bot.yaml"
        self.store_path = workdir / "voicebot.db"
        store = store or f"store:\n  path: {self.store_path}\n"
        self.config.write_text(f"asterisk:\n  app: {app}\nweb:\n  port: {self.port}\n  admin_port: {self.admin_port}\n"
                               f"{store}{extra_config}")
        self.env = {**os.environ, **(env or {})}
        self.log_path = workdir / "bot.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        assert self.proc is None
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen([str(VOICEBOT), "--config", str(self.config), "serve"],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                     start_new_session=True, env=self.env)
        wait_for(lambda: self.ari_connected() or self.proc.poll() is not None, 60, "the bot to connect to ARI")
        assert self.proc.poll() is None, f"voicebot serve exited:\n{self.log()}"

    def ari_connected(self) -> bool:
        """The bot's own word (its /healthz), not ARI's app list, which outlives a dead bot
        while any of its channels remain."""
        return self.health().get("ari_connected") is True

    def health(self) -> dict:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return json.load(r)
        except OSError:
            return {}

    def store(self):
        from voicebot.store.sqlite import SqliteStore

        return SqliteStore(self.store_path)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self._log.close()
        try:
            wait_for(lambda: not bot_registered(self.app), 10, "ARI to forget the bot")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{cli(f'ari show app {self.app}')}\n{cli('core show channels')}") from None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def sip_password(account: str = "softphone") -> str:
    """The password of SIP account ``account`` (each account in pjsip.conf has its own)."""
    password = _sip_password(account)
    assert password, f"no {sip_secret_name(account)}: `asterisk/pbx install` (or sync) writes asterisk/secrets.env"
    return password


def call(script: CallScript) -> CallReport:
    return asyncio.run(place_call(script, "softphone", sip_password()))



def greeting_audio(when: datetime, rate: int = 8000):
    """The greeting the bot says to a call at ``when`` (the dialplan's clock), as the caller hears it."""
    from voicebot.config import load_settings
    from voicebot.dialogue.runtime import greeting_text
    from voicebot.speech.tts import create_speech_out

    settings = load_settings()
    return asyncio.run(create_speech_out(settings, rate).audio_for(greeting_text(settings, when)))
