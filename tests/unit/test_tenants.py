"""Several departments (tenants) on one platform: one bot across all their articles, each tenant's
own number and widget with its greeting and human route, records owned by the tenant that
answered, and a broken tenant folder that never takes the others down."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voicebot.chat import build_chat_service
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.dialogue.engine import Conversation, DialogueEngine
from voicebot.dialogue.events import Ask, Digit, Utterance
from voicebot.dialogue.runtime import build_runtime
from voicebot.errors import ConfigError
from voicebot.knowledge import load_for_settings
from voicebot.nlu.matcher import MatchResult
from voicebot.store.sqlite import SqliteStore


@pytest.fixture
def site(tmp_path):
    """A copy of the shipped knowledge (both tenants) and a config pointing at it."""
    shutil.copytree(PROJECT_ROOT / "knowledge", tmp_path / "knowledge")
    path = tmp_path / "site.yaml"
    path.write_text(f"knowledge:\n  directory: {tmp_path / 'knowledge'}\n  gate_on_reload: false\n")
    return tmp_path / "knowledge", load_settings(path)


def _break(path: Path) -> None:
    path.write_text(path.read_text().replace("answer_then_offer_transfer: pladsanvisning",
                                             "answer_then_offer_transfer: nowhere"))


def test_the_platform_loads_every_tenant_with_its_own_departments():
    kb = load_for_settings(load_settings())
    assert set(kb.tenants) == {"kff", "buf"} and kb.main == "kff" and not kb.broken
    assert kb.by_id["pladsanvisning"].tenant == "buf" and kb.by_id["pas"].tenant == "kff"
    assert kb.directory.departments["pladsanvisning"].target == "dept-pladsanvisning"  # from buf's _tenant.yaml
    assert kb.human_for("buf") == "pladsanvisning" and kb.human_for("kff") == "borgerservice"
    assert kb.human_for("unknown") == "borgerservice"  # a number naming no tenant: the main route


def test_a_broken_tenant_is_left_out_and_the_others_serve(site):
    root, settings = site
    _break(root / "buf" / "pladsanvisning.yaml")
    kb = load_for_settings(settings)
    assert set(kb.tenants) == {"kff"} and "pas" in kb.by_id and "pladsanvisning" not in kb.by_id
    assert "pladsanvisning.yaml" in kb.broken["buf"] and "unknown department 'nowhere'" in kb.broken["buf"]
    with pytest.raises(ConfigError, match="pladsanvisning.yaml"):  # `voicebot knowledge check` is strict
        load_for_settings(settings, strict=True)


def test_a_reload_keeps_a_broken_tenants_last_good_knowledge_and_takes_the_others_changes(site):
    root, settings = site
    runtime = build_runtime(settings)
    _break(root / "buf" / "pladsanvisning.yaml")
    pas = root / "kff" / "pas.yaml"
    pas.write_text(pas.read_text().replace("title: ", "title: Nyt ", 1))
    ok, message = runtime.reload()
    assert not ok and "kept the previous knowledge of buf" in message and "pladsanvisning.yaml" in message
    assert runtime.kb.by_id["pladsanvisning"].tenant == "buf"  # still answering BUF's questions
    assert runtime.kb.by_id["pas"].title.startswith("Nyt ")   # kff's edit went live


@pytest.mark.parametrize("text, key, line, problem", [
    ("human: nowhere\n", "human", 1, "unknown department 'nowhere'"),
    ("departments:\n  affald:\n    name: X\n    target: dept-x\n", "departments.affald", 3, "already defined"),
    ("departments:\n  x:\n    name: X\n    target: dept-x\n    hours: nope\n", "departments.x.hours", 5,
     "no schedule named 'nope'"),
    ("greeting:\n  voice_closed: Vi har lukket.\n", "greeting.voice_closed", 2, "{opens}"),
    ("nmae: BUF\n", "nmae", 1, "unknown key"),
])
def test_tenant_file_errors_name_file_line_and_key(site, text, key, line, problem):
    root, settings = site
    (root / "buf" / "_tenant.yaml").write_text(text)
    kb = load_for_settings(settings)
    assert "buf" not in kb.tenants and "kff" in kb.tenants
    with pytest.raises(ConfigError) as err:
        load_for_settings(settings, strict=True)
    assert err.value.file.endswith("buf/_tenant.yaml") and err.value.key == key and err.value.line == line
    assert problem in str(err.value)


def test_article_ids_are_one_namespace_and_an_article_lives_in_its_tenants_folder(site):
    root, settings = site
    (root / "buf" / "pas.yaml").write_text((root / "kff" / "pas.yaml").read_text().replace("tenant: kff", "tenant: buf"))
    kb = load_for_settings(settings)
    assert "article id 'pas' is also used by tenant 'kff'" in kb.broken["buf"]
    assert kb.by_id["pas"].tenant == "kff"  # the main number's tenant keeps its id
    (root / "buf" / "pas.yaml").unlink()
    moved = root / "buf" / "skat.yaml"
    shutil.move(root / "kff" / "skat.yaml", moved)  # still says tenant: kff
    kb = load_for_settings(settings)
    assert "says tenant 'kff'" in kb.broken["buf"]


class _Matcher:
    """A fixed verdict (a unit test of the engine's tie rule, not of the matcher)."""

    def __init__(self, result: MatchResult) -> None:
        self.result = result

    def match(self, text: str) -> MatchResult:
        return self.result


CLOSE_CALL = MatchResult("sundhedskort", 0.5, 0.05, "ask", (("sundhedskort", 2.0), ("tandpleje", 1.95), ("none", 0.1)))


@pytest.mark.parametrize("tenant, expected", [("", "clarify"), ("kff", "clarify"), ("buf", "tandpleje")])
def test_a_tenants_own_number_wins_a_close_call_for_its_own_article(tenant, expected):
    kb = load_for_settings(load_settings())
    engine = DialogueEngine(kb, _Matcher(CLOSE_CALL))
    conv = Conversation("voice", tenant=tenant, can_sms=False)
    actions = engine.handle(conv, Utterance("tænder og kort", 0.9))
    if expected == "clarify":
        assert isinstance(actions[-1], Ask) and actions[-1].kind == "clarify"
    else:  # BUF's article, confirmed first as any uncertain match that would transfer
        assert conv.last_result.intent == expected and actions[-1].kind == "confirm_topic"


def test_a_tenants_own_number_greets_as_the_tenant_and_sends_medarbejder_to_its_queue():
    kb = load_for_settings(load_settings())
    engine = DialogueEngine(kb, _Matcher(CLOSE_CALL))
    main, own = Conversation("voice", human_open=True), Conversation("voice", tenant="buf")
    assert "Borgerservice" in engine.start(main)[0].text
    assert "Børne- og Ungdomsforvaltningen" in engine.start(own)[0].text
    assert "Børne- og Ungdomsforvaltningens" in engine.start(Conversation("chat", tenant="buf"))[0].text
    assert engine.handle(own, Digit("0"))[-1].target == "dept-pladsanvisning"
    assert engine.handle(main, Digit("0"))[-1].target == "human-queue"
    assert kb.tenants["buf"].greeting.voice in engine.known_lines()  # synthesized before a call needs it


def test_the_record_belongs_to_the_tenant_whose_article_answered(tmp_path):
    store = SqliteStore(tmp_path / "voicebot.db")
    service = build_chat_service(load_settings(), store=store)
    first = service.reply(None, "Hvordan skriver jeg mit barn op til vuggestue?")  # on kff's (main) widget
    assert first["intent"] == "pladsanvisning"
    other = service.reply(None, "Jeg skal have et nyt sundhedskort")
    service.close_all()
    by_id = {r.id: r for r in store.recent(10)}
    assert len(by_id) == 2
    tenants = sorted(r.tenant for r in by_id.values())
    assert tenants == ["buf", "kff"], "the vuggestue chat is BUF's record, the sundhedskort chat stays kff's"
    assert other["intent"] == "sundhedskort"
    store.close()


async def test_the_widget_names_its_tenant_and_an_unknown_one_is_refused(client):
    resp = await client.post("/api/chat", json={"message": "Jeg har mistet mit pas", "tenant": "nope"})
    assert resp.status == 404 and "unknown tenant 'nope'" in (await resp.json())["error"]
    resp = await client.post("/api/chat", json={"message": "Jeg har mistet mit pas", "tenant": "buf"})
    assert resp.status == 200 and (await resp.json())["intent"] == "pas-mistet"  # one bot across tenants
    info = await (await client.get("/api/chat/info?tenant=buf")).json()
    assert info["tenant"] == "buf" and info["name"] == "Pladsanvisningen"
    info = await (await client.get("/api/chat/info")).json()
    assert info["tenant"] == "kff" and info["name"] == "Borgerservice" and info["phone"] == "33 66 33 66"
    assert (await client.get("/api/chat/info?tenant=nope")).status == 404

