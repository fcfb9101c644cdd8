"""Least privilege and no stray personal data in what the project ships for Asterisk (the real
PBX is checked in tests/integration/test_pbx_hardening.py and test_ami.py):

* no live_dangerously, and no dialplan line using an escalating function (DB() and friends);
* the AMI user may send UserEvents and read replies, nothing else;
* no CDR, CEL or queue_log (they would keep callers' numbers outside the retention rule);
* every SIP account has its own secret, generated (and migrated) by ``asterisk/pbx``;
* the `make run` banner prints no secret; `make secrets` does, when asked.
"""

from __future__ import annotations

import os
import re
import subprocess

from voicebot.config import PROJECT_ROOT, read_secrets, sip_password, sip_secret_name

CONF = PROJECT_ROOT / "asterisk" / "conf"
DIALPLANS = PROJECT_ROOT / "dialplans"
PBX = PROJECT_ROOT / "asterisk" / "pbx"
MODULES_DIR = PROJECT_ROOT / "asterisk" / "chroot" / "usr" / "lib" / "x86_64-linux-gnu" / "asterisk" / "modules"

#: functions Asterisk registers as escalating (ast_custom_function_register_escalating): blocked on
#: a thread that inhibits escalations, which a call's thread does once ARI set a variable on it
ESCALATING = ("DB", "DB_DELETE", "SHELL", "FILE", "FILE_COUNT_LINE", "FILE_FORMAT", "STAT", "CURL",
              "LOCK", "TRYLOCK", "UNLOCK", "REALTIME_DESTROY", "PERIODIC_HOOK", "CONFBRIDGE")


def code_lines(path) -> list[tuple[int, str]]:
    """(line number, text before any ';' comment) of an Asterisk config file."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split(";", 1)[0].strip()
        if code:
            out.append((n, code))
    return out


def section(path, name: str) -> dict[str, str]:
    """key -> value of ``[name]`` (first occurrence) in an Asterisk config file."""
    values: dict[str, str] = {}
    inside = False
    for _, code in code_lines(path):
        if code.startswith("["):
            inside = code.split("]")[0][1:] == name
            continue
        if inside and "=" in code:
            key, _, value = code.partition("=")
            values[key.strip()] = value.lstrip(">").strip()
    return values


# ---- escalation protection ---------------------------------------------------------------------

def test_asterisk_conf_has_no_live_dangerously():
    assert not any(code.startswith("live_dangerously") for _, code in code_lines(CONF / "asterisk.conf"))
    files = section(CONF / "asterisk.conf", "files")
    assert files["astctlpermissions"] == "0660" and files["astctlowner"] == "asterisk"


def test_no_dialplan_uses_an_escalating_function():
    pattern = re.compile(r"(?<![A-Z0-9_])(" + "|".join(ESCALATING) + r")\(")
    found = [f"{path.name}:{n}: {code}" for path in sorted(DIALPLANS.glob("*.conf"))
             for n, code in code_lines(path) if pattern.search(code)]
    assert found == [], "escalating functions fail after a hand-back (read AstDB with DB_EXISTS):\n" + "\n".join(found)


def test_the_dialplan_still_reads_the_ops_switches_from_astdb():
    text = "\n".join(code for path in DIALPLANS.glob("*.conf") for _, code in code_lines(path))
    for key in ("voicebot/enabled", "voicebot/hours", "voicebot/clock", "voicebot-holiday/"):
        assert f"DB_EXISTS({key}" in text, key


def test_pbx_starts_asterisk_unprivileged():
    script = PBX.read_text()
    assert re.search(r"opts=\(-U asterisk -G asterisk -f", script)
    assert re.search(r'/usr/sbin/asterisk "\$\{opts\[@\]\}"', script)
    assert not re.search(r"chroot \"\$ROOT\" /usr/sbin/asterisk -f", script)  # no root start left


# ---- AMI -----------------------------------------------------------------------------------------

def test_the_ami_user_has_only_the_user_class():
    user = section(CONF / "manager.conf", "voicebot")
    for right in ("read", "write"):
        assert set(user[right].split(",")) == {"user"}, f"{right}={user[right]}"
    assert user["permit"].startswith("127.0.0.1") and user["deny"].startswith("0.0.0.0")


# ---- no call records -----------------------------------------------------------------------------

def test_cdr_cel_and_queue_log_are_off():
    assert section(CONF / "cdr.conf", "general")["enable"] == "no"
    assert section(CONF / "cel.conf", "general")["enable"] == "no"
    assert section(CONF / "logger.conf", "general")["queue_log"] == "no"
    noload = {code.split("=>")[1].strip() for _, code in code_lines(CONF / "modules.conf") if code.startswith("noload")}
    backends = {"cdr_csv.so", "cdr_custom.so", "cdr_sqlite3_custom.so", "cel_custom.so", "cel_sqlite3_custom.so"}
    if MODULES_DIR.is_dir():  # every backend the installed Asterisk has
        backends |= {p.name for p in MODULES_DIR.glob("c[de][lr]_*.so")}
    assert backends - noload == set()


# ---- SIP secrets ---------------------------------------------------------------------------------

def pjsip_auths() -> dict[str, list[str]]:
    """account -> the lines of its (auth) section in the pjsip.conf template."""
    auths: dict[str, list[str]] = {}
    current = None
    for _, code in code_lines(CONF / "pjsip.conf"):
        if code.startswith("["):
            current = code.split("]")[0][1:] if code.endswith("(auth)") else None
            if current:
                auths[current] = []
        elif current:
            auths[current].append(code)
    return auths


def test_each_sip_account_has_its_own_secret_placeholder():
    auths = pjsip_auths()
    assert {"softphone", "agent1", "agent-pladsanvisning"} <= set(auths)
    for account, lines in auths.items():
        assert f"username={account}" in lines
        assert f"password=@@{sip_secret_name(account)}@@" in lines, account
    template = section(CONF / "pjsip.conf", "auth")
    assert "password" not in template  # no shared password in the (auth) template


def test_sip_secret_names():
    assert sip_secret_name("agent-pladsanvisning") == "SIP_PASSWORD_AGENT_PLADSANVISNING"
    assert sip_secret_name("softphone") == "SIP_PASSWORD_SOFTPHONE"


def test_sip_password_reads_the_accounts_own_secret(monkeypatch):
    monkeypatch.setenv("VOICEBOT_SIP_PASSWORD_AGENT1", "agent-secret")
    monkeypatch.setenv("VOICEBOT_SIP_PASSWORD_SOFTPHONE", "phone-secret")
    assert sip_password("agent1") == "agent-secret" and sip_password("softphone") == "phone-secret"


def run_pbx_secrets(path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    return subprocess.run([str(PBX), "secrets"], env={**clean, "PBX_SECRETS": str(path), **env},
                          capture_output=True, text=True, check=True)


def test_pbx_generates_one_secret_per_account_and_keeps_an_old_file_working(tmp_path):
    path = tmp_path / "secrets.env"
    # a file from before per-account passwords: one SIP_PASSWORD for every account
    path.write_text("# generated by asterisk/pbx install; never commit this file\n"
                    "ARI_PASSWORD=ari-old\nAMI_SECRET=ami-old\nSIP_PASSWORD=shared-old\n")
    run_pbx_secrets(path)
    first = read_secrets(path)
    assert first["ARI_PASSWORD"] == "ari-old" and first["AMI_SECRET"] == "ami-old"  # kept
    assert first["SIP_PASSWORD_SOFTPHONE"] == "shared-old"  # a configured softphone goes on working
    accounts = [f"SIP_PASSWORD_{a}" for a in ("SOFTPHONE", "AGENT1", "AGENT_PLADSANVISNING")]
    assert len({first[k] for k in accounts}) == 3  # every other account got its own
    assert all(len(first[k]) >= 16 for k in accounts[1:])
    assert "SIP_PASSWORD" not in first  # the shared one is gone
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    run_pbx_secrets(path)  # idempotent: nothing changes on the next sync
    assert read_secrets(path) == first


def test_pbx_takes_a_secret_from_the_environment(tmp_path):
    path = tmp_path / "secrets.env"
    run_pbx_secrets(path, VOICEBOT_SIP_PASSWORD_AGENT1="from|env&x")
    assert read_secrets(path)["SIP_PASSWORD_AGENT1"] == "from|env&x"


# ---- what is printed -----------------------------------------------------------------------------

def test_the_run_banner_prints_no_secret(monkeypatch, capsys):
    from voicebot.commands.serve import print_banner
    from voicebot.config import load_settings

    planted = {f"VOICEBOT_SIP_PASSWORD_{a}": f"planted-{a.lower()}-pw" for a in ("SOFTPHONE", "AGENT1")}
    planted |= {"VOICEBOT_ARI_PASSWORD": "planted-ari-pw", "VOICEBOT_AMI_SECRET": "planted-ami-pw"}
    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    print_banner(load_settings())
    out = capsys.readouterr()
    shown = out.out + out.err
    secrets = list(planted.values()) + [v for k, v in read_secrets().items() if v]
    assert not [s for s in secrets if s in shown]
    assert "asterisk/secrets.env" in shown and "make secrets" in shown
    assert "user softphone" in shown and "user agent1" in shown


def test_make_secrets_prints_them_when_asked(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("ARI_PASSWORD=not-shown\nSIP_PASSWORD_SOFTPHONE=pw-phone\nSIP_PASSWORD_AGENT_PLADSANVISNING=pw-pa\n")
    out = subprocess.run(["make", "-s", "-C", str(PROJECT_ROOT), "secrets", f"SECRETS={path}"],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"softphone\s+pw-phone", out) and re.search(r"agent-pladsanvisning\s+pw-pa", out)
    assert "not-shown" not in out  # SIP accounts only

