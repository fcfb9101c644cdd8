"""Pre-synthesis of prompts and answers (voicebot prompts build / say)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from voicebot import cli
from voicebot.config import load_settings
from voicebot.speech.audio import read_wav, write_wav
from voicebot.speech.tts.cache import TTSCache
from voicebot.speech.tts.fake import FakeTTS
from voicebot.speech.tts import fixed_prompts
from voicebot.speech.tts.prebuild import SpokenText, dedupe, prebuild, prompt_texts


def caches(tmp_path, engine):
    return [TTSCache(engine, tmp_path / "cache", rate) for rate in (16000, 8000)]


def test_each_text_is_synthesized_once_for_all_rates(tmp_path):
    engine = FakeTTS()
    items = [SpokenText("prompt a", "Hej"), SpokenText("prompt b", "Farvel")]
    report = prebuild(items, caches(tmp_path, engine), progress=False)
    assert (report.texts, report.synthesized, report.cached, report.failed) == (2, 2, 0, [])
    assert sorted(engine.calls) == ["Farvel", "Hej"] and engine.prepared == 1
    for c in caches(tmp_path, engine):
        assert c.has("Hej") and c.has("Farvel")


def test_built_lines_become_known_to_the_cache(tmp_path):
    engine = FakeTTS()
    built = caches(tmp_path, engine)
    prebuild([SpokenText("article a", "Et svar")], built, progress=False)
    assert all(c.is_known("Et svar") for c in built)
    assert not built[0].is_known("Du er nummer 4 i køen")


def test_second_build_finds_everything_cached(tmp_path):
    engine = FakeTTS()
    items = [SpokenText("prompt a", "Hej")]
    prebuild(items, caches(tmp_path, engine), progress=False)
    report = prebuild(items, caches(tmp_path, engine), progress=False)
    assert (report.synthesized, report.cached) == (0, 1)
    assert engine.calls == ["Hej"] and engine.prepared == 1  # nothing to do: no model load


def test_only_the_missing_rate_is_filled(tmp_path):
    engine = FakeTTS()
    TTSCache(engine, tmp_path / "cache", 16000, known=["Hej"]).get("Hej")
    report = prebuild([SpokenText("p", "Hej")], caches(tmp_path, engine), progress=False)
    assert report.synthesized == 1 and TTSCache(engine, tmp_path / "cache", 8000).has("Hej")


def test_recordings_are_counted_not_synthesized(tmp_path):
    rec = tmp_path / "r.wav"
    write_wav(rec, np.zeros(800, dtype=np.int16), 8000)
    engine = FakeTTS()
    items = [SpokenText("article a", "Svar", rec), SpokenText("article b", "Andet svar", tmp_path / "missing.wav")]
    report = prebuild(items, caches(tmp_path, engine), progress=False)
    assert (report.recordings, report.synthesized) == (1, 1)
    assert engine.calls == ["Andet svar"]  # a missing recording still gets its TTS fallback


def test_a_failing_text_is_reported_and_the_rest_built(tmp_path):
    engine = FakeTTS(fail_on="BOOM")
    items = [SpokenText("article x", "BOOM her"), SpokenText("article y", "Fint")]
    report = prebuild(items, caches(tmp_path, engine), jobs=2, progress=False)
    assert report.synthesized == 1 and report.failed == ["article x: fake failure"]


def test_dedupe_keeps_one_per_text_and_drops_empty():
    items = prompt_texts({"a": "Hej  der", "b": "Hej der", "c": " "}, {})
    assert [i.source for i in dedupe(items)] == ["prompt a"]


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(f"speech:\n  tts:\n    cache_dir: {tmp_path}/cache\n", encoding="utf-8")
    return path


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng (Debian package) is not installed")
def test_cli_build_then_say(site, tmp_path, capsys):
    from voicebot.commands.prompts import load_knowledge_base
    from voicebot.speech.tts.prebuild import dialogue_texts

    assert cli.main(["--config", str(site), "prompts", "build", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    settings = load_settings(site)
    n = len(dialogue_texts(settings, load_knowledge_base(settings, None)))
    assert n > len(fixed_prompts(settings)) + 28  # fixed lines, every answer, department and menu lines
    assert report["rates"] == [16000, 8000] and report["texts"] == n
    assert report["synthesized"] == n and report["failed"] == []
    assert cli.main(["--config", str(site), "prompts", "build", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] == n

    out = tmp_path / "hej.wav"
    assert cli.main(["--config", str(site), "prompts", "say", "Hej med dig", "--out", str(out), "--rate", "8000"]) == 0
    samples, rate = read_wav(out)
    assert rate == 8000 and 0.3 < len(samples) / rate < 3


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng (Debian package) is not installed")
def test_cli_build_fixed_prompts_only(site, capsys):
    assert cli.main(["--config", str(site), "prompts", "build", "--no-knowledge", "--rate", "8000"]) == 0
    n = len(fixed_prompts(load_settings(site)))
    assert f"{n} texts: {n} synthesized" in capsys.readouterr().out


def test_knowledge_answers_are_collected_from_the_real_knowledge_base():
    from voicebot.commands.prompts import load_knowledge_base
    from voicebot.speech.tts.prebuild import dialogue_texts

    kb = load_knowledge_base(load_settings(), None)
    texts = {i.text for i in dialogue_texts(load_settings(), kb)}
    assert all(a.answer_voice in texts for a in kb.articles)
    assert all(t.strip() for t in texts)
