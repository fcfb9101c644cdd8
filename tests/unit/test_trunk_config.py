"""The SIP trunk's render step (`asterisk/pbx trunk`): off by default, each mode and transport,
settings read as data (environment wins over asterisk/trunk.env), and no value can add a line
or a section to pjsip.conf. The trunk itself is tested end to end in
tests/integration/test_trunk.py; the templates it instantiates are in asterisk/conf/pjsip.conf."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from voicebot.config import PROJECT_ROOT

PBX = PROJECT_ROOT / "asterisk" / "pbx"
CONF = PROJECT_ROOT / "asterisk" / "conf" / "pjsip.conf"


def trunk(tmp_path, file: str = "", **env: str) -> subprocess.CompletedProcess:
    """`asterisk/pbx trunk` with only these settings (none from the caller's environment)."""
    (tmp_path / "trunk.env").write_text(file)
    (tmp_path / "secrets.env").touch()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PBX_", "VOICEBOT_"))}
    return subprocess.run([str(PBX), "trunk"], capture_output=True, text=True, timeout=30,
                          env={**clean, "PBX_TRUNK_FILE": str(tmp_path / "trunk.env"),
                               "PBX_SECRETS": str(tmp_path / "secrets.env"), **env})


def sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = re.split(r"(?<!\\);", line, maxsplit=1)[0].strip().replace("\\;", ";")  # as Asterisk reads it
        if line.startswith("["):
            current = line
            out[current] = []
        elif line and current:
            out[current].append(line)
    return out


def test_off_unless_configured(tmp_path):
    r = trunk(tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("trunk off")


def test_ip_trunk_over_udp(tmp_path):
    r = trunk(tmp_path, PBX_TRUNK="ip", PBX_TRUNK_HOST="10.20.0.10", PBX_TRUNK_BIND="10.20.0.5:5060")
    assert r.returncode == 0, r.stderr
    s = sections(r.stdout)
    assert s["[transport-trunk-udp]"] == ["type=transport", "protocol=udp", "bind=10.20.0.5:5060"]
    assert "transport=transport-trunk-udp" in s["[trunk](trunk-endpoint)"]
    assert "allow=alaw,ulaw,g722" in s["[trunk](trunk-endpoint)"]
    assert not any("media_encryption" in line for line in s["[trunk](trunk-endpoint)"])
    assert s["[trunk](trunk-aor)"] == ["contact=sip:10.20.0.10"]
    assert s["[trunk](trunk-identify)"] == ["endpoint=trunk", "match=10.20.0.10"]  # the host by default
    assert "[trunk](trunk-registration)" not in s


def test_registering_trunk_over_tls_with_srtp(tmp_path):
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("PEM\n")
    r = trunk(tmp_path, PBX_TRUNK="register", PBX_TRUNK_HOST="sbc.example.dk:5061", PBX_TRUNK_BIND="10.20.0.5:5061",
              PBX_TRUNK_TRANSPORT="tls", PBX_TRUNK_SRTP="yes", PBX_TRUNK_USER="kk-voicebot",
              PBX_TRUNK_CERT=str(tmp_path / "cert.pem"), PBX_TRUNK_KEY=str(tmp_path / "key.pem"),
              PBX_TRUNK_CA=str(tmp_path / "ca.pem"), VOICEBOT_TRUNK_PASSWORD="s3cret;x")
    assert r.returncode == 0, r.stderr
    s = sections(r.stdout)
    transport = s["[transport-trunk-tls]"]
    assert "protocol=tls" in transport and "verify_server=yes" in transport
    assert "ca_list_file=/etc/asterisk/trunk-tls/ca.pem" in transport
    endpoint = s["[trunk](trunk-endpoint)"]
    assert "media_encryption=sdes" in endpoint and "outbound_auth=trunk" in endpoint
    assert s["[trunk](trunk-aor)"] == ["contact=sip:sbc.example.dk:5061;transport=tls"]
    registration = s["[trunk](trunk-registration)"]
    assert "server_uri=sip:sbc.example.dk:5061;transport=tls" in registration
    assert "client_uri=sip:kk-voicebot@sbc.example.dk" in registration
    assert "[trunk](trunk-identify)" not in s  # known by its registration (line=yes in the template)
    assert "password=********" in r.stdout and "s3cret" not in r.stdout  # `trunk` never shows it


def test_settings_file_is_read_as_data_and_the_environment_wins(tmp_path):
    file = "PBX_TRUNK=ip\nPBX_TRUNK_HOST=10.1.1.1\nPBX_TRUNK_BIND = '10.1.1.5:5070'\nPBX_TRUNK_MATCH=$(touch pwned)\n"
    r = trunk(tmp_path, file)
    assert r.returncode != 0 and "PBX_TRUNK_MATCH" in r.stderr and not (tmp_path / "pwned").exists()
    r = trunk(tmp_path, file, PBX_TRUNK_MATCH="10.1.1.0/24,10.1.2.7", PBX_TRUNK_HOST="10.9.9.9")
    assert r.returncode == 0, r.stderr
    s = sections(r.stdout)
    assert s["[trunk](trunk-identify)"] == ["endpoint=trunk", "match=10.1.1.0/24,10.1.2.7"]
    assert s["[trunk](trunk-aor)"] == ["contact=sip:10.9.9.9"]
    assert "bind=10.1.1.5:5070" in s["[transport-trunk-udp]"]


@pytest.mark.parametrize("setting, value, message", [
    ("PBX_TRUNK", "yes", "expected off, ip or register"),
    ("PBX_TRUNK_HOST", "10.0.0.1\n[evil]", "PBX_TRUNK_HOST"),
    ("PBX_TRUNK_HOST", "10.0.0.1;transport=tcp", "PBX_TRUNK_HOST"),
    ("PBX_TRUNK_BIND", "127.0.0.1:5060", "the phones' transport"),
    ("PBX_TRUNK_BIND", "0.0.0.0", "address:port"),
    ("PBX_TRUNK_CODECS", "alaw\nallow=all", "PBX_TRUNK_CODECS"),
    ("PBX_TRUNK_TRANSPORT", "tls", "needs PBX_TRUNK_CERT"),
    ("PBX_TRUNK_SRTP", "maybe", "yes or no"),
])
def test_bad_settings_are_refused_with_the_setting_named(tmp_path, setting, value, message):
    env = {"PBX_TRUNK": "ip", "PBX_TRUNK_HOST": "10.0.0.1", "PBX_TRUNK_BIND": "10.0.0.5:5060", setting: value}
    r = trunk(tmp_path, **env)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "[trunk]" not in r.stdout


def test_register_needs_a_user_and_a_password_that_is_never_generated(tmp_path):
    env = {"PBX_TRUNK": "register", "PBX_TRUNK_HOST": "sbc.example.dk", "PBX_TRUNK_BIND": "10.0.0.5:5060"}
    assert "PBX_TRUNK_USER" in trunk(tmp_path, **env).stderr
    r = trunk(tmp_path, **env, PBX_TRUNK_USER="kk")
    assert r.returncode != 0 and "TRUNK_PASSWORD" in r.stderr
    (tmp_path / "secrets.env").write_text("TRUNK_PASSWORD=from-file\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PBX_", "VOICEBOT_"))}
    r = subprocess.run([str(PBX), "trunk"], capture_output=True, text=True, timeout=30,
                       env={**clean, **env, "PBX_TRUNK_USER": "kk", "PBX_TRUNK_FILE": str(tmp_path / "none.env"),
                            "PBX_SECRETS": str(tmp_path / "secrets.env")})
    assert r.returncode == 0 and "username=kk" in r.stdout, r.stderr


def test_the_templates_exist_and_only_pjsip_conf_includes_the_rendered_file():
    text = CONF.read_text()
    for template in ("trunk-endpoint", "trunk-aor", "trunk-identify", "trunk-auth", "trunk-registration"):
        assert f"[{template}](!)" in text
    assert re.search(r"^#tryinclude pjsip_trunk\.conf$", text, re.MULTILINE)  # absent file: no trunk
    endpoint = text.split("[trunk-endpoint](!)", 1)[1].split("\n[", 1)[0]
    assert "context=from-trunk" in endpoint and "allow=alaw,ulaw,g722" in endpoint
    assert "media_encryption_optimistic=no" in endpoint
