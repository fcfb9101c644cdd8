"""The system under test: found running (``make run``), or started and stopped by the benchmark
(``--start``) while it holds the Asterisk lock that the test suite takes too (Asterisk's ports are
fixed, so runs from several clones on one machine take turns)."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from voicebot.bench.procs import get_health, pid_from
from voicebot.config import PROJECT_ROOT, Settings
from voicebot.errors import VoicebotError

LOCK = Path("/tmp/kk-voicebot-asterisk.lock")  # the same lock as tests/integration/conftest.py
PBX = PROJECT_ROOT / "asterisk" / "pbx"
ASTERISK_PIDFILE = PROJECT_ROOT / "asterisk" / "run" / "asterisk.pid"
VOICEBOT = Path(sys.executable).with_name("voicebot")


def health_url(settings: Settings) -> str:
    return f"http://{settings.web.host}:{settings.web.port}/healthz"


def require_running(settings: Settings) -> None:
    """The bot answers /healthz and is connected to Asterisk, or a VoicebotError says what to do."""
    health = get_health(health_url(settings), timeout=3)
    if not health:
        raise VoicebotError(f"no voicebot answers at {health_url(settings)}: start the system with "
                            "`make run` (or pass --start), or pass the bot's --config")
    if not health.get("ari_connected"):
        raise VoicebotError("the voicebot is not connected to Asterisk (is it running? `asterisk/pbx status`)")


@contextmanager
def asterisk_lock() -> Iterator[None]:
    with open(LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another user of Asterisk (a test run?) to release {LOCK} ...",
                  file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class StartedSystem:
    """Asterisk (unless it already runs) and ``voicebot serve``, started here and stopped again:
    only what was started here is stopped."""

    def __init__(self, settings: Settings, config: str | None, log_path: Path) -> None:
        self.settings = settings
        self.config = config
        self.log_path = log_path
        self.started_pbx = False
        self.bot: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    def start(self, timeout: float = 180.0) -> None:
        if not _pbx_running():
            _pbx("start")
            self.started_pbx = True
        if "voicebot" in _pbx("cli", "ari show apps"):
            raise VoicebotError("another voicebot is connected to Asterisk (`make run`?): "
                                "stop it, or benchmark it without --start")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        command = [str(VOICEBOT)] + (["--config", self.config] if self.config else []) + ["serve"]
        self.bot = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                                    start_new_session=True)
        deadline = time.monotonic() + timeout
        while not get_health(health_url(self.settings)).get("ari_connected"):
            if self.bot.poll() is not None or time.monotonic() > deadline:
                raise VoicebotError(f"voicebot serve did not come up (log: {self.log_path})")
            time.sleep(0.5)

    @property
    def bot_pid(self) -> int | None:
        return self.bot.pid if self.bot is not None else None

    def stop(self) -> None:
        if self.bot is not None and self.bot.poll() is None:
            self.bot.send_signal(signal.SIGTERM)
            try:
                self.bot.wait(30)
            except subprocess.TimeoutExpired:
                self.bot.kill()
                self.bot.wait()
        if self._log is not None:
            self._log.close()
        if self.started_pbx:
            _pbx("stop")


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (``timeout``, a CI runner) ends the run like Ctrl-C does, through ``finally``:
    the bot and Asterisk started here must not outlive the benchmark."""
    def exit_now(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def asterisk_pid() -> int | None:
    return pid_from(ASTERISK_PIDFILE, "asterisk")


def running_bot_pid() -> int | None:
    from voicebot.commands.serve import PIDFILE

    return pid_from(PIDFILE, "voicebot")


@contextmanager
def system_under_test(settings: Settings, start: bool, config: str | None) -> Iterator[dict[str, int | None]]:
    """The PIDs of the bot and Asterisk: of the running system, or (``start``) of one started
    here for the block, under the Asterisk lock."""
    if not start:
        require_running(settings)
        yield {"bot": running_bot_pid(), "asterisk": asterisk_pid()}
        return
    with _terminate_as_exit(), asterisk_lock():
        system = StartedSystem(settings, config, PROJECT_ROOT / "var" / "log" / "bench-serve.log")
        try:
            system.start()
            yield {"bot": system.bot_pid, "asterisk": asterisk_pid()}
        finally:
            system.stop()


def _pbx_running() -> bool:
    return subprocess.run([str(PBX), "status"], capture_output=True).returncode == 0


def _pbx(*args: str) -> str:
    done = subprocess.run([str(PBX), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise VoicebotError(f"asterisk/pbx {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout
