"""Config validation: errors name the file, the line and the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from voicebot.config import load_settings
from voicebot.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_defaults_load_without_a_file():
    s = load_settings(None)
    assert s.asterisk.app == "voicebot"
    assert s.web.port == 8080


def test_override_replaces_only_given_keys(tmp_path):
    s = load_settings(write(tmp_path, "web:\n  port: 9090\n"))
    assert s.web.port == 9090
    assert s.web.host == "127.0.0.1"


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "web:\n  port: 9090\n  host: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(path) in str(err.value)
    assert err.value.line is not None and err.value.line >= 3
    assert "invalid YAML" in str(err.value)


def test_wrong_type_names_file_line_and_key(tmp_path):
    path = write(tmp_path, "asterisk:\n  app: voicebot\n  ami_port: five\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    e = err.value
    assert (e.file, e.line, e.key) == (str(path), 3, "asterisk.ami_port")
    assert "whole number" in str(e)


def test_unknown_key_is_an_error_not_ignored(tmp_path):
    path = write(tmp_path, "web:\n  prot: 80\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.key == "web.prot" and err.value.line == 2
    assert "known keys" in str(err.value)


def test_validate_method_points_at_the_field(tmp_path):
    path = write(tmp_path, "asterisk:\n  ari_url: localhost:8088\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.key == "asterisk.ari_url" and err.value.line == 2


def test_literal_choice(tmp_path):
    path = write(tmp_path, "media:\n  format: opus\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "must be one of" in str(err.value) and err.value.key == "media.format"


def test_missing_required_key(tmp_path):
    @dataclasses.dataclass
    class Needs:
        target: str

    s = load_settings(write(tmp_path, "web:\n  port: 1\nextra: {}\n"))
    with pytest.raises(ConfigError) as err:
        s.section("extra", Needs)
    assert err.value.key == "extra.target" and "missing" in str(err.value)
    assert err.value.line == 3  # the section's own line when the key itself is absent


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "nope.yaml")
    assert "file not found" in str(err.value)


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, "- a\n- b\n"))


def test_cli_reports_config_error_without_traceback(tmp_path, capsys):
    from voicebot.cli import main

    path = write(tmp_path, "web:\n  port: high\n")
    code = main(["--config", str(path), "doctor"]) if _has("doctor") else 2
    assert code == 2
    if _has("doctor"):
        err = capsys.readouterr().err
        assert f"{path}:2: web.port" in err and "Traceback" not in err


def _has(command: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"voicebot.commands.{command}") is not None


def test_secret_environment_wins_over_the_secrets_file(monkeypatch, tmp_path):
    import voicebot.config as config

    path = tmp_path / "secrets.env"
    path.write_text("# generated\nSIP_PASSWORD=fromfile\nARI_PASSWORD='quoted'\n")
    monkeypatch.setattr(config, "SECRETS_FILE", path)
    monkeypatch.setattr(config.read_secrets, "__defaults__", (path,))
    monkeypatch.delenv("VOICEBOT_SIP_PASSWORD", raising=False)
    assert config.secret("SIP_PASSWORD") == "fromfile"
    assert config.secret("ARI_PASSWORD") == "quoted"
    assert config.secret("AMI_SECRET") == ""
    monkeypatch.setenv("VOICEBOT_SIP_PASSWORD", "fromenv")
    assert config.secret("SIP_PASSWORD") == "fromenv"
