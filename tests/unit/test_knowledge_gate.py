"""The knowledge gate ("content CI"): `voicebot knowledge check` and the SIGHUP reload reject a
change that lowers accuracy on the tenant's evaluation sets, and say which lines fail now."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from voicebot.chat import build_chat_service
from voicebot.cli import main
from voicebot.config import PROJECT_ROOT, load_settings


@pytest.fixture
def tenant(tmp_path):
    """A copy of the real tenant (articles, gate, baseline) and settings pointing at it."""
    folder = tmp_path / "knowledge" / "kff"
    shutil.copytree(PROJECT_ROOT / "knowledge", folder.parent)  # every tenant: the gate sets span them
    # the mechanism needs one set: the dev set alone halves each run (the shipped gate with all its
    # sets is checked by test_the_shipped_knowledge_passes_its_gate and by `make test`)
    (folder / "_gate.yaml").write_text("sets:\n  - tests/data/intents-dev.yaml\nmax_drop_points: 1.0\n")
    site = tmp_path / "site.yaml"
    site.write_text(f"knowledge:\n  directory: {tmp_path / 'knowledge'}\n")
    return folder, site


def _blunt_pas(folder) -> None:
    """Replace the passport article's examples with unrelated ones: its questions now miss."""
    text = (folder / "pas.yaml").read_text(encoding="utf-8")
    head, rest = text.split("examples:\n", 1)
    body = re.sub(r"^(  - .*\n)+", "", rest)
    unrelated = ["Bliver det regn i morgen", "Hvor varmt er havet", "Blæser det meget i dag",
                 "Kommer der sne til jul", "Hvornår går solen ned", "Er der torden i aften",
                 "Hvor mange grader bliver det", "Skal jeg tage paraply med", "Er det frost i nat",
                 "Hvornår kommer foråret"]
    examples = "".join(f"  - {u}\n" for u in unrelated)
    (folder / "pas.yaml").write_text(head + "examples:\n" + examples + body, encoding="utf-8")


def test_the_shipped_knowledge_passes_its_gate(capsys):
    assert main(["knowledge", "check", "--json"]) == 0  # the committed baseline matches the articles
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and all(s["baseline"] is not None for s in result["sets"].values())


def test_a_change_that_lowers_accuracy_fails_and_lists_the_new_failures(tenant, capsys):
    folder, site = tenant
    assert main(["--config", str(site), "knowledge", "check"]) == 0
    capsys.readouterr()
    _blunt_pas(folder)
    assert main(["--config", str(site), "knowledge", "check", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["ok"]
    dev = result["sets"]["tests/data/intents-dev.yaml"]
    assert dev["failed"] and dev["accuracy"] < dev["baseline"] - 0.01
    # each newly failing line names its file and line, and the intent it expected
    assert all(re.match(r"tests/data/intents-dev\.yaml:\d+: '.+' expected [a-z-]+, got [a-z-]+$", line)
               for line in dev["newly_failing"])
    assert sum(" expected pas, got " in line for line in dev["newly_failing"]) >= 5
    # the line numbers are the real ones in the set file
    lines = (PROJECT_ROOT / "tests/data/intents-dev.yaml").read_text(encoding="utf-8").splitlines()
    first = dev["newly_failing"][0]
    number = int(first.split(":")[1])
    assert first.split("'")[1] in lines[number - 1]


def test_accept_writes_a_new_baseline_that_then_passes(tenant, capsys):
    folder, site = tenant
    _blunt_pas(folder)
    assert main(["--config", str(site), "knowledge", "check", "--accept"]) == 0
    assert main(["--config", str(site), "knowledge", "check"]) == 0
    baseline = json.loads((folder / "_baseline.json").read_text(encoding="utf-8"))
    assert baseline["tests/data/intents-dev.yaml"]["accuracy"] < 0.95


def test_a_removed_article_still_named_by_the_sets_is_a_located_error(tenant, capsys):
    folder, site = tenant
    (folder / "skat.yaml").unlink()
    assert main(["--config", str(site), "knowledge", "check"]) == 2
    assert re.search(r"intents-dev\.yaml:\d+: \[\d+\]\.intent: unknown intent 'skat'", capsys.readouterr().err)


def test_a_bad_gate_file_names_file_line_and_key(tenant, capsys):
    folder, site = tenant
    (folder / "_gate.yaml").write_text("sets:\n  - tests/data/intents-dev.yaml\nmax_drop_points: -2\n")
    assert main(["--config", str(site), "knowledge", "check"]) == 2
    assert "_gate.yaml:3: max_drop_points: must not be negative" in capsys.readouterr().err


def test_reload_runs_the_gate_and_keeps_the_old_knowledge(tenant):
    folder, site = tenant
    svc = build_chat_service(load_settings(site))
    assert svc.reply(None, "Jeg skal have et nyt pas")["intent"] == "pas"
    _blunt_pas(folder)
    ok, message = svc.reload()
    assert not ok and "knowledge gate of kff failed" in message and "intents-dev.yaml" in message
    assert svc.reply(None, "Jeg skal have et nyt pas")["intent"] == "pas"  # the old knowledge serves on
