"""Knowledge articles, departments and opening hours: the shipped files load; broken ones are
rejected with file, line and key."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.errors import ConfigError
from voicebot.knowledge import Schedule, knowledge_dir, load_directory, load_for_settings, load_knowledge

CATALOGUE = """pas pas-mistet koerekort sundhedskort eu-sygesikringskort flytning laegevalg mitid
digital-post navneaendring bopaelsattest vielse id-kort tidsbestilling aabningstider
udlandet-tilflytning doedsfald boligstoette folkepension skat parkering affald pladsanvisning
tandpleje jobcenter hjemmepleje bibliotek medarbejder""".split()

GOOD = """\
id: test-pas
tenant: kff
title: Test
examples: [en, to, tre, fire, fem, seks, syv, otte, ni, ti]
answer:
  voice: Ring på {borgerservice_phone}.
  chat: Se {kk_url}.
link: "{kk_url}"
sms: "Link: {kk_url}"
action: {transfer: affald}
recording: prompts/pas.wav
"""


@pytest.fixture(scope="module")
def kb():
    """The shipped platform: every tenant's folder (kff: Borgerservice, buf: Børne- og Unge)."""
    return load_for_settings(load_settings())


def write(tmp_path: Path, text: str, name: str = "a.yaml") -> Path:
    (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


def test_catalogue_complete(kb):
    assert sorted(kb.ids) == sorted(CATALOGUE)
    assert set(kb.tenants) == {"kff", "buf"} and not kb.broken
    assert {a.id for a in kb.articles if a.tenant == "buf"} == {"pladsanvisning", "tandpleje"}
    for article in kb.articles:
        assert article.file.parent.name == article.tenant  # each tenant's articles in its own folder
        assert len(set(article.examples)) >= 10, article.id
        assert len(article.answer_voice.split()) <= 62, article.id  # ~25 s of speech
        for text in (article.answer_voice, article.answer_chat, article.link, article.sms):
            assert "{" not in text, article.id  # every placeholder filled from config
        assert article.link.startswith("https://")


def test_transfer_actions_point_at_configured_departments(kb):
    assert kb.by_id["medarbejder"].action.kind == "transfer"
    assert kb.by_id["medarbejder"].action.department == "borgerservice"
    assert kb.by_id["affald"].action.kind == "answer_then_offer_transfer"
    for article in kb.articles:
        if article.action.department:
            assert article.action.department in kb.directory.departments


def test_loader_shape_for_other_modules(tmp_path):
    kb = load_knowledge(write(tmp_path, GOOD))
    article = kb.articles[0]
    assert article.answer_voice == "Ring på 33 66 33 66."
    assert article.recording == (tmp_path / "prompts" / "pas.wav").resolve()
    assert article.action.department == "affald"


def test_knowledge_dir_is_the_tenant_folder():
    assert knowledge_dir(load_settings()) == PROJECT_ROOT / "knowledge" / "kff"


@pytest.mark.parametrize("change, line, key, problem", [
    (("voice: Ring på {borgerservice_phone}.", "voice: Ring på {no_such_value}."), 6, "answer.voice", "placeholder"),
    (("action: {transfer: affald}", "action: {transfer: nowhere}"), 10, "action.transfer", "unknown department"),
    (("action: {transfer: affald}", "action: fly"), 10, "action", "expected answer"),
    (("title: Test", "title: Test\ncolour: blue"), 4, "colour", "unknown key"),
    (("examples: [en, to, tre, fire, fem, seks, syv, otte, ni, ti]", "examples: [en, to]"), 4, "examples", "at least 10"),
    (("id: test-pas", "id: Test Pas"), 1, "id", "lower-case"),
])
def test_errors_name_file_line_and_key(tmp_path, change, line, key, problem):
    write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_knowledge(tmp_path)
    err = info.value
    assert err.file == str(tmp_path / "a.yaml")
    assert err.line == line
    assert err.key == key
    assert problem in err.problem


def test_missing_voice_answer(tmp_path):
    write(tmp_path, GOOD.replace("  voice: Ring på {borgerservice_phone}.\n", ""))
    with pytest.raises(ConfigError, match=r"a.yaml:6: answer.voice: required key is missing"):
        load_knowledge(tmp_path)


def test_bad_regex_and_invalid_yaml(tmp_path):
    write(tmp_path, GOOD + "rules:\n  - regex: '(unclosed'\n")
    with pytest.raises(ConfigError, match=r"a.yaml:13: rules\[0\].regex: invalid regular expression"):
        load_knowledge(tmp_path)
    write(tmp_path, "id: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_knowledge(tmp_path)


def test_duplicate_ids_and_too_long_voice(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError, match="also used in"):
        load_knowledge(tmp_path)
    (tmp_path / "b.yaml").unlink()
    write(tmp_path, GOOD.replace("voice: Ring", "voice: " + "ord " * 90 + "Ring"))
    with pytest.raises(ConfigError, match="too long to say"):
        load_knowledge(tmp_path)


def test_list_file_with_several_articles(tmp_path):
    second = GOOD.replace("id: test-pas", "id: test-to")
    items = "\n".join("- " + textwrap.indent(t, "  ")[2:] for t in (GOOD, second))
    write(tmp_path, items)
    assert [a.id for a in load_knowledge(tmp_path).articles] == ["test-pas", "test-to"]


def test_human_queue_hours():
    directory = load_directory(load_settings())
    hours = directory.schedule("borgerservice")
    cph = dt.timezone(dt.timedelta(hours=1))  # winter time
    assert hours.is_open(dt.datetime(2026, 11, 23, 11, 30, tzinfo=cph))      # Monday
    assert not hours.is_open(dt.datetime(2026, 11, 23, 10, 59, tzinfo=cph))
    assert hours.is_open(dt.datetime(2026, 11, 24, 8, 0, tzinfo=cph))        # Tuesday
    assert not hours.is_open(dt.datetime(2026, 11, 24, 14, 0, tzinfo=cph))
    assert not hours.is_open(dt.datetime(2026, 11, 28, 12, 0, tzinfo=cph))   # Saturday
    assert hours.describe() == "mandag 11 til 17 og tirsdag til fredag 8 til 14"
    assert directory.schedule("affald") is None  # hours not kept in config


def test_schedule_validation_is_located(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("hours:\n  borgerservice:\n    mon: ['17-11']\n")
    with pytest.raises(ConfigError, match=r"site.yaml:3: hours.borgerservice.mon: interval ends before"):
        load_directory(load_settings(site))
    assert not Schedule(closed_dates=["2026-12-24"], thu=["8-14"]).is_open(
        dt.datetime(2026, 12, 24, 10, tzinfo=dt.timezone.utc))


def test_settings_level_loader_uses_site_values(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("knowledge:\n  values:\n    borgerservice_phone: 12 34 56 78\n")
    kb = load_for_settings(load_settings(site))
    assert "12 34 56 78" in kb.by_id["aabningstider"].answer_voice
