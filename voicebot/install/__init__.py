"""Running as services: ``voicebot install`` (``make install``) puts two systemd units in place.

* ``kk-voicebot-asterisk.service``: Asterisk from the project's chroot, in the foreground, started
  as root and dropping to the chroot's ``asterisk`` user itself (``-U``/``-G``), as
  ``asterisk/pbx start`` runs it; ``systemctl reload`` = ``asterisk/pbx sync``.
* ``kk-voicebot.service``: ``voicebot serve`` as the unprivileged system user ``kk-voicebot``,
  which owns what the bot writes (var/, the caches, the staff pages' proposals) and nothing else;
  ``systemctl reload`` = SIGHUP = the knowledge reload.

Both restart on failure and log to the journal. The templates are in ``units/`` (``@NAME@``
placeholders); ``render`` fills them in for one project folder (the prefix). With ``root`` the
files go into a throw-away root and nothing else happens (no user, no chown, no systemctl): what
the tests verify with ``systemd-analyze verify``.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    from voicebot.config import Settings

TEMPLATES = Path(__file__).with_name("units")
ASTERISK_UNIT = "kk-voicebot-asterisk.service"
BOT_UNIT = "kk-voicebot.service"
UNITS = (ASTERISK_UNIT, BOT_UNIT)
DEFAULT_USER = "kk-voicebot"
UNIT_DIR = Path("etc/systemd/system")       # under the root
ENV_FILE = Path("etc/kk-voicebot/voicebot.env")
#: characters a path may not hold: the units name it unquoted, in shell snippets too
UNSAFE = set(" \t\n'\"\\$%;&|<>`*?")
HOME_DIRS = ("/home", "/root", "/run/user")  # what ProtectHome=yes hides

ENV_TEMPLATE = """\
# Environment of kk-voicebot.service (voicebot install wrote this once; it is yours now).
# Root only (mode 600): systemd reads it as root. It wins over asterisk/secrets.env.
# VOICEBOT_CONFIG=/etc/kk-voicebot/site.yaml
# VOICEBOT_SMS_TOKEN=...
# VOICEBOT_PG_PASSWORD=...
"""


class InstallError(VoicebotError):
    """The services cannot be installed as asked; nothing was changed."""


@dataclasses.dataclass
class Layout:
    """What the units name: the project folder, the bot's user, its config, what it may write."""

    prefix: Path
    user: str = DEFAULT_USER
    config: Path | None = None
    writable: list[Path] = dataclasses.field(default_factory=list)   # created and owned by the user
    optional: list[Path] = dataclasses.field(default_factory=list)   # writable if present

    @property
    def voicebot(self) -> Path:
        return self.prefix / ".venv" / "bin" / "voicebot"

    @property
    def python(self) -> Path:
        return self.prefix / ".venv" / "bin" / "python"

    @property
    def pbx(self) -> Path:
        return self.prefix / "asterisk" / "pbx"


def layout(settings: Settings, prefix: Path, user: str = DEFAULT_USER, config: Path | None = None) -> Layout:
    """The paths the bot writes, from its settings, relative paths taken from ``prefix``: var/
    (pid files, record salt, staff users, the SQLite store), the store's folder if elsewhere,
    the TTS and embedding caches, and each tenant's ``_proposals`` folder."""
    from voicebot.knowledge.departments import KnowledgeConfig
    from voicebot.knowledge.tenants import tenant_folders
    from voicebot.nlu.config import NluConfig
    from voicebot.speech.tts.factory import tts_config
    from voicebot.staff.proposals import FOLDER
    from voicebot.store import store_config

    def at(value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else prefix / path

    store = store_config(settings)
    writable = [prefix / "var", at(tts_config(settings).cache_dir), at(settings.section("nlu", NluConfig).cache_dir)]
    if store.backend == "sqlite":
        writable.append(at(store.path).parent)
    knowledge = at(settings.section("knowledge", KnowledgeConfig).directory)
    optional = [folder / FOLDER for folder in tenant_folders(knowledge)]
    return Layout(prefix, user, config, _outermost(writable), optional)


def _outermost(paths: list[Path]) -> list[Path]:
    """The paths without those inside another of them, in their first order."""
    out: list[Path] = []
    for path in dict.fromkeys(paths):
        if not any(path != other and path.is_relative_to(other) for other in paths):
            out.append(path)
    return out


def check_path(path: Path, what: str) -> None:
    """The units name paths unquoted (in shell snippets too): no blanks, quotes or specials."""
    bad = sorted(UNSAFE & set(str(path)))
    if bad:
        raise InstallError(f"{path}: {what}'s path may not contain {' '.join(map(repr, bad))}")


def check_prefix(prefix: Path) -> None:
    check_path(prefix, "the project folder")
    if not prefix.is_absolute():
        raise InstallError(f"{prefix}: give the project folder as an absolute path")
    for needed, hint in (((prefix / ".venv" / "bin" / "voicebot"), "run make setup there first"),
                         ((prefix / "asterisk" / "pbx"), "not a kk-voicebot checkout")):
        if not needed.is_file():
            raise InstallError(f"{prefix}: no {needed.relative_to(prefix)} ({hint})")


def render(lay: Layout) -> dict[str, str]:
    """The unit files' text by name."""
    if lay.user == "root" or not re.fullmatch(r"[a-z_][a-z0-9_-]*", lay.user):
        raise InstallError(f"{lay.user!r}: the bot's user must be an unprivileged system user name")
    for path in [lay.prefix, *lay.writable, *lay.optional, *([lay.config] if lay.config else [])]:
        check_path(path, "a path the units name")
    protect_home = "read-only" if str(lay.prefix).startswith(HOME_DIRS) else "yes"
    rw = [f"ReadWritePaths={p}" for p in lay.writable] + [f"ReadWritePaths=-{p}" for p in lay.optional]
    env = (f"Environment=VOICEBOT_CONFIG={lay.config}" if lay.config else
           "# Environment=VOICEBOT_CONFIG=FILE  (`voicebot --config FILE install` writes this line)")
    values = {"PREFIX": str(lay.prefix), "CHROOT": str(lay.prefix / "asterisk" / "chroot"),
              "RUNDIR": str(lay.prefix / "asterisk" / "run"), "PBX": str(lay.pbx),
              "PYTHON": str(lay.python), "VOICEBOT": str(lay.voicebot), "USER": lay.user,
              "PROTECT_HOME": protect_home, "READ_WRITE_PATHS": "\n".join(rw), "ENVIRONMENT": env}
    out = {}
    for name in UNITS:
        text = (TEMPLATES / name).read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        left = re.findall(r"@[A-Z_]+@", text)
        if left:
            raise InstallError(f"{name}: template placeholder {left[0]} has no value")
        out[name] = text
    return out


# -- the steps ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """One change to the machine: what ``--dry-run`` prints, and how it is done."""

    says: str
    do: Callable[[], object]


def install_steps(lay: Layout, root: Path | None) -> list[Step]:
    """Write the units (and an empty environment file); on the real machine (``root`` None) also
    create the bot's user, hand it what the bot writes, and enable both units."""
    base = root or Path("/")
    units = render(lay)
    steps: list[Step] = []
    if root is None:
        steps.append(Step(f"create system user {lay.user} (if missing)", lambda: ensure_user(lay.user)))
        for path in [*lay.writable, *lay.optional]:
            steps.append(Step(f"mkdir -p {path}; chown -R {lay.user}: {path}",
                              lambda path=path: own_tree(path, lay.user)))
        if lay.config is not None:
            steps.append(Step(f"check that {lay.user} may read {lay.config}",
                              lambda: check_readable(lay.config, lay.user)))
    for name, text in units.items():
        target = base / UNIT_DIR / name
        steps.append(Step(f"write {target}", lambda target=target, text=text: write_file(target, text, 0o644)))
    env_file = base / ENV_FILE
    steps.append(Step(f"write {env_file} (mode 600) unless it exists",
                      lambda: write_file(env_file, ENV_TEMPLATE, 0o600, keep=True)))
    if root is None:
        steps += systemctl_steps(["daemon-reload"], ["enable", *UNITS])
    return steps


def uninstall_steps(lay: Layout, root: Path | None, purge: bool) -> list[Step]:
    """Stop and disable both units and remove them; with ``purge`` also the environment file and
    the user (what it owned goes back to root). The records in var/ stay: they are the
    municipality's, deleted by retention or by hand, never by an uninstaller."""
    base = root or Path("/")
    steps: list[Step] = []
    installed = [name for name in UNITS if (base / UNIT_DIR / name).exists()]
    if root is None and installed:
        steps += systemctl_steps(["disable", "--now", *installed])
    for name in UNITS:
        target = base / UNIT_DIR / name
        steps.append(Step(f"remove {target}", lambda target=target: target.unlink(missing_ok=True)))
    if root is None:
        steps += systemctl_steps(["daemon-reload"])
    if purge:
        env_file = base / ENV_FILE
        steps.append(Step(f"remove {env_file}", lambda: _remove_env(env_file)))
        if root is None:
            for path in [*lay.writable, *lay.optional]:
                steps.append(Step(f"chown -R root: {path}", lambda path=path: own_tree(path, "root", create=False)))
            steps.append(Step(f"remove system user {lay.user}", lambda: remove_user(lay.user)))
    return steps


def systemctl_steps(*commands: list[str]) -> list[Step]:
    if not Path("/run/systemd/system").is_dir():  # no systemd running here (a container, an image build)
        return [Step(f"systemd is not running here: skip systemctl {' '.join(c)}", lambda: None) for c in commands]
    return [Step(f"systemctl {' '.join(c)}", lambda c=c: run(["systemctl", *c])) for c in commands]


# -- the machine -------------------------------------------------------------------------------------


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise InstallError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.returncode}")


def write_file(path: Path, text: str, mode: int, keep: bool = False) -> None:
    """Write ``path`` atomically with ``mode``; ``keep``: leave an existing file alone."""
    if keep and path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, path)


def _remove_env(env_file: Path) -> None:
    env_file.unlink(missing_ok=True)
    try:
        env_file.parent.rmdir()
    except OSError:
        pass  # not empty: the operator's other files stay


def ensure_user(user: str) -> None:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    run(["useradd", "--system", "--user-group", "--home-dir", "/nonexistent", "--no-create-home",
         "--shell", "/usr/sbin/nologin", "--comment", "kk-voicebot (voicebot serve)", user])


def remove_user(user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return
    run(["userdel", user])


def own_tree(path: Path, user: str, create: bool = True) -> None:
    if create:
        path.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        return
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def check_readable(path: Path, user: str) -> None:
    """The bot's config must be readable by its user (checked as that user, not guessed)."""
    done = subprocess.run(["runuser", "-u", user, "--", "test", "-r", str(path)])
    if done.returncode:
        raise InstallError(f"{path}: {user} cannot read it (the bot's config): chmod o+r, or chgrp {user}")
