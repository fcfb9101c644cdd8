"""The chat API on a real aiohttp test server, the service's sessions and safe reload, the CLI."""

from __future__ import annotations

import shutil

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voicebot.chat import add_chat_routes, build_chat_service
from voicebot.cli import main
from voicebot.config import PROJECT_ROOT, load_settings


async def test_chat_answers_and_keeps_session(client):
    resp = await client.post("/api/chat", json={"message": "Jeg har mistet mit pas"})
    assert resp.status == 200
    body = await resp.json()
    assert body["intent"] == "pas-mistet" and 0 < body["confidence"] <= 1
    assert "politi" in body["reply"]["text"] and body["reply"]["link"].startswith("https://")
    sid = body["session_id"]
    resp = await client.post("/api/chat", json={"session_id": sid, "message": "hvad skal jeg have med?"})
    body = await resp.json()
    assert body["session_id"] == sid and body["intent"] == "pas-mistet"


async def test_options_and_yes(client):
    body = await (await client.post("/api/chat", json={"message": "skraldet er ikke hentet"})).json()
    assert body["reply"]["options"] == ["Ja", "Nej"]
    body = await _say(client, body["session_id"], "ja")
    assert "Affald og genbrug" in body["reply"]["text"] and body["intent"] == "affald"


async def test_out_of_scope(client):
    body = await (await client.post("/api/chat", json={"message": "hvem vinder DM i håndbold"})).json()
    assert body["intent"] == "none" and body["reply"]["text"]


@pytest.mark.parametrize("data, status, fragment", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"message": ""}', 400, "message"),
    (b'{"message": 5}', 400, "message"),
    (b'{"message": "hej", "session_id": "a b"}', 400, "session_id"),
    (('{"message": "' + "a" * 600 + '"}').encode(), 413, "too long"),
    (b'{"message": "' + b"a" * 9000 + b'"}', 413, "too large"),
])
async def test_bad_requests(client, data, status, fragment):
    resp = await client.post("/api/chat", data=data, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert fragment in (await resp.json())["error"]


async def test_widget_page(client):
    resp = await client.get("/chat")
    assert resp.status == 200 and "/api/chat" in await resp.text()


def test_reload_keeps_previous_knowledge_when_broken(tmp_path):
    folder = tmp_path / "knowledge" / "kff"
    shutil.copytree(PROJECT_ROOT / "knowledge", folder.parent)  # every tenant: the gate sets span them
    site = tmp_path / "site.yaml"
    # the knowledge gate on reload is tested in test_knowledge_gate.py; here: a broken file
    site.write_text(f"knowledge:\n  directory: {tmp_path / 'knowledge'}\n  gate_on_reload: false\n")
    svc = build_chat_service(load_settings(site))
    (folder / "pas.yaml").write_text((folder / "pas.yaml").read_text().replace("action: answer", "action: fly"))
    ok, message = svc.reload()
    assert not ok and "pas.yaml" in message and "action" in message
    assert svc.reply(None, "Jeg har mistet mit pas")["intent"] == "pas-mistet"  # still serving
    (folder / "pas.yaml").write_text((folder / "pas.yaml").read_text().replace("action: fly", "action: answer"))
    text = (folder / "skat.yaml").read_text().replace("title: Skat (Skattestyrelsen)", "title: Skat")
    (folder / "skat.yaml").write_text(text)
    ok, message = svc.reload()
    assert ok and "28 articles" in message and svc.kb.by_id["skat"].title == "Skat"


def test_cli_chat_once(capsys):
    assert main(["chat", "--once", "Jeg har mistet mit pas"]) == 0
    out = capsys.readouterr().out
    assert "politi" in out and "Læs mere: https://" in out


# ---- the same flows as the phone, over HTTP, with the record they leave -------------------------

@pytest.fixture
async def recorded(service, tmp_path):
    """A chat service sharing the loaded knowledge, writing records to a real SQLite file."""
    from voicebot.chat.service import ChatService
    from voicebot.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "chat.db")
    svc = ChatService(service.settings, service.runtime, store)
    app = web.Application()
    add_chat_routes(app, svc)
    async with TestClient(TestServer(app)) as c:
        yield c, store, svc
    store.close()


async def _say(client, sid, message):
    resp = await client.post("/api/chat", json={"session_id": sid, "message": message})
    assert resp.status == 200, await resp.text()
    return await resp.json()


class Chat:
    """One citizen's conversation: sends each message with the id the server last issued."""

    def __init__(self, client) -> None:
        self.client, self.sid = client, None

    async def say(self, message: str) -> dict:
        body = await _say(self.client, self.sid, message)
        assert self.sid is None or body["session_id"] == self.sid, "the server started a new session"
        self.sid = body["session_id"]
        return body


async def test_chat_answer_then_survey_is_stored(recorded):
    client, store, _ = recorded
    chat = Chat(client)
    assert (await chat.say("Jeg har mistet mit pas"))["intent"] == "pas-mistet"
    body = await chat.say("tak for hjælpen")
    assert body["reply"]["options"] == ["1", "2", "3", "4", "5"] and not body["ended"]
    assert body["reply"]["ask"] == "survey"  # the widget shows it as a rating
    body = await chat.say("4")
    assert body["ended"]
    record = store.recent(1)[0].as_dict()
    assert record["channel"] == "chat" and record["survey"] == 4 and record["outcome"] == "resolved"
    assert [t["decision"] for t in record["turns"]] == ["answer", "survey", "survey"]


async def test_chat_clarify_by_option(recorded, monkeypatch):
    client, store, svc = recorded
    from voicebot.nlu.matcher import MatchResult

    ask = MatchResult("pas", 0.5, 0.01, "ask", (("pas", 2.0), ("pas-mistet", 1.99)))
    original = svc.runtime.engine.matcher.match
    monkeypatch.setattr(svc.runtime.engine.matcher, "match", lambda text: ask if text == "pas" else original(text))
    chat = Chat(client)
    body = await chat.say("pas")
    options = body["reply"]["options"]
    assert len(options) == 2 and "pas" in options[0].lower()
    body = await chat.say(options[1])  # the widget sends the option's label
    assert body["intent"] == "pas-mistet"


async def test_chat_transfer_gives_contact_information(recorded):
    client, store, svc = recorded
    body = await _say(client, None, "Jeg vil gerne tale med en medarbejder")
    assert "33 66 33 66" in body["reply"]["text"]
    svc.close_all()
    record = store.recent(1)[0].as_dict()
    assert record["outcome"] == "transferred:human-queue" and record["turns"][0]["decision"] == "transfer"


async def test_cpr_typed_in_the_chat_never_reaches_the_database(recorded, tmp_path):
    client, store, svc = recorded
    await _say(client, None, "Mit cpr nummer er 010190-1234 og jeg har mistet mit pas")
    svc.close_all()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("chat.db*"))
    assert b"010190" not in stored and b"1234" not in stored
    assert "[CPR]" in store.recent(1)[0].as_dict()["turns"][0]["heard"]
