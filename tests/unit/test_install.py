"""``voicebot install``: the systemd units for Asterisk and the bot, written into a throw-away root
and checked by systemd itself (``systemd-analyze verify``: syntax, unknown keys, executables that
do not exist, dependencies that do not resolve) and then key by key; the real install (user,
chown, /etc) runs in a mount namespace with a private copy of /etc. This container runs no
systemd, so the units are verified, not started."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from voicebot import cli
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.install import (ASTERISK_UNIT, BOT_UNIT, ENV_FILE, UNIT_DIR, InstallError, check_prefix, layout,
                              render)
from voicebot.install.secrets_env import env_line, write_env

CHROOT = PROJECT_ROOT / "asterisk" / "chroot"
PBX = PROJECT_ROOT / "asterisk" / "pbx"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value, in order (a key may repeat: ExecStartPre=, ReadWritePaths=)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert section is not None, line
        section.setdefault(key, []).append(value)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    assert cli.main(["install", "--root", str(root)]) == 0
    return root


def units(root: Path) -> dict[str, dict[str, dict[str, list[str]]]]:
    return {name: parse_unit((root / UNIT_DIR / name).read_text()) for name in (ASTERISK_UNIT, BOT_UNIT)}


def test_systemd_verifies_both_units(installed):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    files = [str(installed / UNIT_DIR / name) for name in (ASTERISK_UNIT, BOT_UNIT)]
    done = subprocess.run([analyze, "verify", *files], capture_output=True, text=True, timeout=60)
    # a warning (unknown key, bad value, missing executable, unresolvable Wants=) fails it too
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr + done.stdout
    for name in (ASTERISK_UNIT, BOT_UNIT):
        mode = (installed / UNIT_DIR / name).stat().st_mode & 0o777
        assert mode == 0o644


def test_systemd_verify_would_catch_a_broken_unit(installed, tmp_path):
    """The check above is not vacuous: the same call rejects a typo and a missing program."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = (installed / UNIT_DIR / BOT_UNIT).read_text()
    broken = tmp_path / BOT_UNIT
    broken.write_text(text.replace("Restart=on-failure", "Restrat=on-failure")
                      .replace(".venv/bin/voicebot serve", ".venv/bin/no-such-program serve"))
    shutil.copy(installed / UNIT_DIR / ASTERISK_UNIT, tmp_path / ASTERISK_UNIT)
    done = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Restrat" in done.stderr and "no-such-program" in done.stderr


def test_the_bot_runs_unprivileged_reloads_on_hup_and_comes_after_asterisk(installed):
    bot = units(installed)[BOT_UNIT]
    service = bot["Service"]
    assert service["User"] == ["kk-voicebot"] and service["Group"] == ["kk-voicebot"]
    assert service["ExecStart"] == [f"{PROJECT_ROOT}/.venv/bin/voicebot serve"]
    assert service["WorkingDirectory"] == [str(PROJECT_ROOT)]
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # = the knowledge reload
    assert service["Restart"] == ["on-failure"]
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the bot alone: it hands calls back itself
    # ordered after Asterisk and pulling it in, but not bound to it (the chat outlives Asterisk)
    assert ASTERISK_UNIT in bot["Unit"]["After"][0].split()
    assert ASTERISK_UNIT in bot["Unit"]["Wants"][0].split()
    assert "Requires" not in bot["Unit"] and "BindsTo" not in bot["Unit"]
    assert bot["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_bot_writes_only_var_the_caches_and_proposals(installed):
    service = units(installed)[BOT_UNIT]["Service"]
    assert service["ProtectSystem"] == ["strict"] and service["NoNewPrivileges"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""] and service["PrivateTmp"] == ["yes"]
    assert service["ProtectHome"] == ["yes"]  # the project is not under /home here
    writable = service["ReadWritePaths"]
    assert writable[:3] == [f"{PROJECT_ROOT}/var", f"{PROJECT_ROOT}/cache/tts", f"{PROJECT_ROOT}/cache/nlu"]
    assert set(writable[3:]) == {f"-{PROJECT_ROOT}/knowledge/{t}/_proposals" for t in ("kff", "buf")}
    assert not any(w.endswith(("/models", "/knowledge", "/asterisk")) for w in writable)
    # secrets: a root-only step turns asterisk/secrets.env into an environment file systemd reads
    assert service["ExecStartPre"] == [f"+{PROJECT_ROOT}/.venv/bin/python -m voicebot.install.secrets_env "
                                       f"{PROJECT_ROOT}/asterisk/secrets.env /run/kk-voicebot/secrets.env"]
    assert service["EnvironmentFile"] == ["-/run/kk-voicebot/secrets.env", "-/etc/kk-voicebot/voicebot.env"]
    assert service["LimitNICE"] == ["-10"]  # the media clock's nice -10, without root


def test_asterisk_runs_from_the_chroot_in_the_foreground_and_drops_root(installed):
    ast = units(installed)[ASTERISK_UNIT]
    service = ast["Service"]
    assert service["ExecStart"] == [f"/usr/sbin/chroot {CHROOT} /usr/sbin/asterisk -U asterisk -G asterisk -f -n -q -p"]
    assert "User" not in service  # it starts as root (chroot, realtime) and switches to -U/-G itself
    assert service["Restart"] == ["on-failure"]
    assert service["ExecReload"] == [f"{PBX} install",  # = asterisk/pbx sync: render, then reload
                                     f'/usr/sbin/chroot {CHROOT} /usr/sbin/asterisk -rx "module reload"',
                                     f'/usr/sbin/chroot {CHROOT} /usr/sbin/asterisk -rx "dialplan reload"']
    assert f"{PBX} install" in service["ExecStartPre"]  # config, dialplans, secrets rendered in first
    assert service["StandardOutput"] == ["journal"]
    assert ast["Unit"]["AssertFileIsExecutable"] == [f"{CHROOT}/usr/sbin/asterisk"]
    # the pid file asterisk/pbx goes by, and removed again
    assert service["ExecStartPost"][0] == f"/bin/sh -c 'echo ${{MAINPID}} > {PROJECT_ROOT}/asterisk/run/asterisk.pid'"
    assert service["ExecStopPost"] == [f"/bin/rm -f {PROJECT_ROOT}/asterisk/run/asterisk.pid"]


def test_the_units_shell_snippets_parse(installed):
    """Each ``sh -c '...'`` in the units, with systemd's ``$$`` -> ``$``, is valid sh."""
    snippets = []
    for unit in units(installed).values():
        for key in ("ExecStartPre", "ExecStartPost"):
            for command in unit["Service"].get(key, []):
                found = re.search(r"/bin/sh -c '(.*)'$", command)
                if found:
                    snippets.append(found.group(1).replace("$$", "$"))
    assert len(snippets) == 4
    for snippet in snippets:
        done = subprocess.run(["sh", "-n", "-c", snippet], capture_output=True, text=True)
        assert done.returncode == 0, (snippet, done.stderr)


def test_uninstall_removes_the_units_and_purge_the_environment_file(tmp_path):
    assert cli.main(["install", "--root", str(tmp_path)]) == 0
    assert (tmp_path / UNIT_DIR / BOT_UNIT).is_file() and (tmp_path / UNIT_DIR / ASTERISK_UNIT).is_file()
    env = tmp_path / ENV_FILE
    assert env.stat().st_mode & 0o777 == 0o600
    env.write_text("VOICEBOT_SMS_TOKEN=operator's\n")
    assert cli.main(["install", "--root", str(tmp_path)]) == 0  # again: the operator's file is kept
    assert env.read_text() == "VOICEBOT_SMS_TOKEN=operator's\n"
    assert cli.main(["install", "--root", str(tmp_path), "--uninstall"]) == 0
    assert not (tmp_path / UNIT_DIR / BOT_UNIT).exists() and not (tmp_path / UNIT_DIR / ASTERISK_UNIT).exists()
    assert env.exists()  # without --purge the settings stay
    assert cli.main(["install", "--root", str(tmp_path), "--uninstall", "--purge"]) == 0
    assert not env.exists() and not env.parent.exists()


def test_dry_run_changes_nothing_and_says_what_the_real_install_does(tmp_path, capsys):
    assert cli.main(["install", "--root", str(tmp_path), "--dry-run"]) == 0
    assert list(tmp_path.iterdir()) == []
    assert cli.main(["install", "--dry-run"]) == 0  # the real machine's plan, printed only
    out = capsys.readouterr().out
    assert "would: create system user kk-voicebot" in out
    assert f"would: mkdir -p {PROJECT_ROOT}/var; chown -R kk-voicebot: {PROJECT_ROOT}/var" in out
    assert "would: write /etc/systemd/system/kk-voicebot.service" in out
    assert "systemctl enable kk-voicebot-asterisk.service kk-voicebot.service" in out


def test_a_site_config_and_a_store_elsewhere_reach_the_unit(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(f"store:\n  path: {tmp_path}/records/voicebot.db\nspeech:\n  tts:\n    cache_dir: /srv/tts\n")
    lay = layout(load_settings(site), PROJECT_ROOT, config=site)
    bot = parse_unit(render(lay)[BOT_UNIT])["Service"]
    assert bot["Environment"][0] == f"VOICEBOT_CONFIG={site}"
    assert f"{tmp_path}/records" in bot["ReadWritePaths"] and "/srv/tts" in bot["ReadWritePaths"]


def test_a_project_under_home_stays_readable(tmp_path):
    lay = layout(load_settings(), Path("/home/ops/kk-voicebot"))
    for text in render(lay).values():
        assert parse_unit(text)["Service"]["ProtectHome"] == ["read-only"]


def test_prefix_is_checked(tmp_path):
    with pytest.raises(InstallError, match="run make setup there first"):
        check_prefix(tmp_path)
    with pytest.raises(InstallError, match="may not contain ' '"):
        check_prefix(tmp_path / "with space")
    assert cli.main(["install", "--root", str(tmp_path), "--prefix", str(tmp_path)]) == 2
    assert cli.main(["install", "--root", str(tmp_path), "--user", "root"]) == 2  # the point is not root
    assert list(tmp_path.iterdir()) == []


def test_secrets_become_an_environment_file_without_the_sip_passwords(tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# generated\nARI_PASSWORD=abc123XYZ\nAMI_SECRET = 'q$u\"ote'\nSIP_PASSWORD_AGENT1=s1\n"
                       "PG_PASSWORD=it's\n")
    out = tmp_path / "run" / "secrets.env"
    out.parent.mkdir()
    assert write_env(secrets, out) == 3
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_text().splitlines()[1:]
    assert lines == ["VOICEBOT_ARI_PASSWORD='abc123XYZ'", "VOICEBOT_AMI_SECRET='q$u\"ote'",
                     'VOICEBOT_PG_PASSWORD="it\'s"']
    assert env_line("BAD NAME", "x") is None and env_line("X", "a\nb") is None


INSIDE = """
import json, os, pwd, sys
from pathlib import Path
from voicebot import cli
prefix = Path(sys.argv[1])
owner = lambda p: pwd.getpwuid(os.stat(p).st_uid).pw_name
assert cli.main(["install", "--prefix", str(prefix)]) == 0
seen = {"uid": pwd.getpwnam("kk-voicebot").pw_uid,
        "owners": {p: owner(prefix / p) for p in ("var", "var/voicebot.db", "cache/tts", "cache/nlu",
                                                  "knowledge/kff/_proposals", "knowledge/kff")},
        "units": sorted(os.listdir("/etc/systemd/system")), "env": oct(os.stat("/etc/kk-voicebot/voicebot.env").st_mode)}
assert cli.main(["install", "--uninstall", "--purge", "--prefix", str(prefix)]) == 0
seen["user_after"] = any(e.pw_name == "kk-voicebot" for e in pwd.getpwall())
seen["var_after"] = owner(prefix / "var/voicebot.db")
seen["units_after"] = sorted(n for n in os.listdir("/etc/systemd/system") if n.startswith("kk-"))
print(json.dumps(seen))
"""


def test_the_real_install_and_uninstall_in_a_private_etc(tmp_path):
    """The steps without --root (useradd, chown, the units under /etc, and --uninstall --purge) for
    real, in a mount namespace whose /etc is a copy: the host's /etc is not touched. systemctl is
    skipped by the installer itself, as systemd does not run here."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace)")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: the real install would reload it")
    if any(e.pw_name == "kk-voicebot" for e in pwd.getpwall()):
        pytest.skip("kk-voicebot exists on this host already")
    prefix = tmp_path / "prefix"
    (prefix / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / ".venv" / "bin" / "voicebot", prefix / ".venv" / "bin" / "voicebot")
    (prefix / "asterisk").mkdir()
    (prefix / "asterisk" / "pbx").touch()
    (prefix / "knowledge" / "kff").mkdir(parents=True)
    (prefix / "var").mkdir()
    (prefix / "var" / "voicebot.db").write_bytes(b"records")
    script = (f"set -e; cp -a /etc {tmp_path}/etc; mount --bind {tmp_path}/etc /etc; "
              f"exec {PROJECT_ROOT}/.venv/bin/python -c '{INSIDE}' {prefix}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["owners"] == {"var": "kk-voicebot", "var/voicebot.db": "kk-voicebot", "cache/tts": "kk-voicebot",
                              "cache/nlu": "kk-voicebot", "knowledge/kff/_proposals": "kk-voicebot",
                              "knowledge/kff": "root"}
    assert {ASTERISK_UNIT, BOT_UNIT} <= set(seen["units"]) and seen["env"] == "0o100600"
    assert seen["user_after"] is False and seen["var_after"] == "root" and seen["units_after"] == []
    assert not any(e.pw_name == "kk-voicebot" for e in pwd.getpwall())  # the host never saw the user
    assert not (Path("/etc/systemd/system") / BOT_UNIT).exists()
