"""Another Asterisk from the project's chroot, next to the normal one, for tests.

The approach of asterisk/cluster's nodes, without the network namespace: its own config
directory (/etc/asterisk-NAME in the chroot), its own db/spool/log/run directories (never a
file of the normal Asterisk), started and stopped by PID, on loopback addresses and ports the
normal Asterisk does not use (127.0.0.0/8 is all loopback: the config binds e.g. 127.0.0.2).
``asterisk.conf`` is the project's with the directories moved; everything else is given.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from voicebot.config import PROJECT_ROOT

CHROOT = PROJECT_ROOT / "asterisk" / "chroot"
CONF = PROJECT_ROOT / "asterisk" / "conf"


def chroot_id(kind: str) -> int:
    """The numeric id of the chroot's ``asterisk`` user or group (its names are not the host's)."""
    table = CHROOT / "etc" / ("group" if kind == "group" else "passwd")
    for line in table.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "asterisk":
            return int(fields[2])
    raise AssertionError("no asterisk user in the chroot: run asterisk/pbx install")


class ExtraAsterisk:
    """An Asterisk 22 named ``name`` with the config files ``files`` (name -> text)."""

    def __init__(self, name: str, files: dict[str, str], logdir: Path) -> None:
        assert re.fullmatch(r"[a-z][a-z0-9-]*", name) and name not in ("node1", "node2")  # asterisk/cluster's
        self.name = name
        self.etc = f"/etc/asterisk-{name}"  # inside the chroot
        self.dirs = [f"/var/lib/asterisk-{name}", f"/var/spool/asterisk-{name}",
                     f"/var/log/asterisk-{name}", f"/run/asterisk-{name}"]
        self.files = {"asterisk.conf": self._asterisk_conf(), **files}
        self.log_path = logdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def _asterisk_conf(self) -> str:
        """The project's asterisk.conf, its [directories] template made a real section with
        this instance's own directories (as asterisk/cluster's node_asterisk_conf)."""
        lib, spool, log, run = self.dirs
        own = {"astetcdir": self.etc, "astvarlibdir": lib, "astdbdir": lib, "astkeydir": lib,
               "astspooldir": spool, "astrundir": run, "astlogdir": log}
        out, in_dirs = [], False
        for line in (CONF / "asterisk.conf").read_text().splitlines():
            if line.startswith("[directories]"):
                out.append(f"[directories]\n; tests/integration/extra_asterisk.py: {self.name}'s own")
                out += [f"{k} => {v}" for k, v in own.items()]
                in_dirs = True
                continue
            if line.startswith("["):
                in_dirs = False
            if in_dirs and line.split("=>")[0].strip() in own:
                continue
            out.append(line)
        return "\n".join(out) + "\n"

    # ---- files ------------------------------------------------------------------------------------
    def write_config(self, files: dict[str, str] | None = None) -> None:
        """(Re)write the config directory: root:asterisk, 0640 (Asterisk may read, not write)."""
        if files:
            self.files.update(files)
        etc = CHROOT / self.etc.lstrip("/")
        gid = chroot_id("group")
        etc.mkdir(parents=True, exist_ok=True)
        os.chown(etc, 0, gid)
        os.chmod(etc, 0o750)
        for name, text in self.files.items():
            path = etc / name
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chown(path.parent, 0, gid)
            os.chmod(path.parent, 0o750)
            path.write_text(text)
            os.chown(path, 0, gid)
            os.chmod(path, 0o640)

    def copy_in(self, source: Path, name: str) -> str:
        """Copy a host file (a certificate, a key) into the config directory; its chroot path."""
        self.files.pop(name, None)
        etc = CHROOT / self.etc.lstrip("/")
        target = etc / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        os.chown(target, 0, chroot_id("group"))
        os.chmod(target, 0o640)
        return f"{self.etc}/{name}"

    # ---- process ----------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None
        self.write_config()
        uid, gid = chroot_id("user"), chroot_id("group")
        for d in self.dirs:
            path = CHROOT / d.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid, gid)
        (CHROOT / self.dirs[3].lstrip("/") / "asterisk.ctl").unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        # own session (a ^C stays ours); chroot execs Asterisk, so the PID is Asterisk's. No -p:
        # no realtime priority (and no astcanary) for a test instance
        self.proc = subprocess.Popen(
            ["chroot", str(CHROOT), "/usr/sbin/asterisk", "-C", f"{self.etc}/asterisk.conf",
             "-U", "asterisk", "-G", "asterisk", "-f", "-n", "-q"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Asterisk '{self.name}' exited at start:\n{self.log_tail()}")
            if self._rx("core waitfullybooted").returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"Asterisk '{self.name}' did not boot in {timeout:.0f} s:\n{self.log_tail()}")

    def _rx(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(CHROOT), "/usr/sbin/asterisk", "-C", f"{self.etc}/asterisk.conf",
                               "-rx", command], capture_output=True, text=True, timeout=20)

    def cli(self, command: str) -> str:
        r = self._rx(command)
        if r.returncode != 0:
            raise AssertionError(f"{self.name}: `{command}` failed: {r.stdout}{r.stderr}")
        return r.stdout

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM by PID (Asterisk hangs up its calls), SIGKILL after 5 s; then its config and
        directories are removed from the chroot."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
        for d in [self.etc, *self.dirs]:
            shutil.rmtree(CHROOT / d.lstrip("/"), ignore_errors=True)

    def leftovers(self) -> list[str]:
        """This instance's directories still in the chroot (none after ``stop``)."""
        return [d for d in [self.etc, *self.dirs] if (CHROOT / d.lstrip("/")).exists()]

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
