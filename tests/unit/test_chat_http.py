"""The chat API's defences on a real aiohttp server on 127.0.0.1, with the real knowledge:
bodies split across TCP packets, hostile JSON, server-issued sessions, the rate limit, the
worker pool, and the widget (run in node) following the server's session ids."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voicebot.chat import api as chat_api
from voicebot.chat import add_chat_routes, build_chat_service
from voicebot.chat.service import ChatConfig, ChatService
from voicebot.config import load_settings

XFF = "X-Forwarded-For"


@pytest.fixture(scope="module")
def runtime():
    return build_chat_service(load_settings()).runtime


def service_with(runtime, tmp_path, chat_yaml: str = "", cls=ChatService) -> ChatService:
    site = tmp_path / "site.yaml"
    site.write_text(f"chat:\n{chat_yaml}" if chat_yaml else "")
    return cls(load_settings(site), runtime)


async def serve(service: ChatService) -> TestClient:
    app = web.Application()
    add_chat_routes(app, service)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def make_client():
    clients = []

    async def make(service):
        clients.append(await serve(service))
        return clients[-1]

    yield make
    for c in clients:
        await c.close()


async def post(client, body, headers=None):
    resp = await client.post("/api/chat", data=body if isinstance(body, bytes) else json.dumps(body).encode(),
                             headers={"Content-Type": "application/json", **(headers or {})})
    return resp.status, await resp.json(), resp.headers


# ---- bodies -----------------------------------------------------------------------------------

async def _raw_exchange(port: int, pieces: list[bytes], pause: float = 0.05) -> tuple[int, dict]:
    """Send ``pieces`` as separate TCP segments (no Nagle), pausing between them; read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        length = int(fields[b"content-length"])
        return status, json.loads(await reader.readexactly(length))
    finally:
        writer.close()


async def test_a_body_split_across_tcp_packets_is_read_whole(runtime, tmp_path, make_client):
    client = await make_client(service_with(runtime, tmp_path))
    body = json.dumps({"message": "Jeg har mistet mit pas"}, ensure_ascii=False).encode()
    head = (f"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    pieces = [head[:20], head[20:], body[:3], body[3:17], body[17:30], body[30:]]  # "mis|tet": split mid-word
    status, answer = await _raw_exchange(client.port, pieces)
    assert status == 200 and answer["intent"] == "pas-mistet", answer


async def test_a_chunked_body_in_slow_pieces_is_read_whole(runtime, tmp_path, make_client):
    client = await make_client(service_with(runtime, tmp_path))
    body = json.dumps({"message": "Jeg har mistet mit pas"}).encode()
    head = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:25], body[25:])]
    status, answer = await _raw_exchange(client.port, [head, *chunks, b"0\r\n\r\n"])
    assert status == 200 and answer["intent"] == "pas-mistet", answer


async def test_an_oversized_chunked_body_is_413_and_a_stalled_one_408(runtime, tmp_path, make_client, monkeypatch):
    client = await make_client(service_with(runtime, tmp_path))
    head = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    big = b"%x\r\n%s\r\n" % (5000, b" " * 5000)
    status, answer = await _raw_exchange(client.port, [head, big, big])
    assert status == 413 and "too large" in answer["error"]
    monkeypatch.setattr(chat_api, "BODY_SECONDS", 0.3)
    stalled = (b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n"
               b"Connection: close\r\n\r\n{\"message\": ")
    status, answer = await _raw_exchange(client.port, [stalled])
    assert status == 408 and "not received" in answer["error"]


# ---- hostile JSON -----------------------------------------------------------------------------

@pytest.mark.parametrize("data, status, fragment", [
    (b"[" * 100_000, 413, "too large"),  # over the 8 KB cap before any parsing
    (b"[" * 8000, 400, "nested too deeply"),  # the parser's recursion guard, caught
    (b'{"message": "hej", "x": ' + b"[" * 900 + b"]" * 900 + b"}", 400, "nested too deeply"),
    (b'{"message": "hej", "x": [[[[1]]]]}', 400, "nested too deeply"),
    (b'{"message": "hej", "n": ' + b"1" * 5000 + b"}", 400, "not valid JSON"),  # int digits limit
    (b'\xff\xfe{"message": "hej"}', 400, "UTF-8"),
    (b'"just a string"', 400, "JSON object"),
    (b'{"message": ["hej"]}', 400, "message"),
    (b'{"message": "hej", "session_id": 5}', 400, "session_id"),
    (b'{"message": "hej", "session_id": {"a": 1}}', 400, "session_id"),
])
async def test_hostile_json_is_a_clear_400_never_a_500(runtime, tmp_path, make_client, data, status, fragment):
    client = await make_client(service_with(runtime, tmp_path))
    got, body, _ = await post(client, data)
    assert got == status and fragment in body["error"], body


# ---- sessions ---------------------------------------------------------------------------------

async def test_made_up_session_ids_start_a_new_server_issued_session(runtime, tmp_path, make_client):
    client = await make_client(service_with(runtime, tmp_path))
    status, body, _ = await post(client, {"session_id": "my-own-id", "message": "Jeg har mistet mit pas"})
    assert status == 200 and body["new_session"] and body["session_id"] != "my-own-id"
    sid = body["session_id"]
    _, body, _ = await post(client, {"session_id": sid, "message": "hvad skal jeg have med?"})
    assert body["session_id"] == sid and not body["new_session"] and body["intent"] == "pas-mistet"


async def test_a_flood_of_sessions_cannot_evict_another_clients_conversation(runtime, tmp_path, make_client):
    svc = service_with(runtime, tmp_path, "  trusted_proxies: [127.0.0.1]\n  rate_burst: 1000\n"
                                          "  max_sessions: 6\n  max_sessions_per_client: 2\n")
    client = await make_client(svc)
    _, citizen, _ = await post(client, {"message": "skraldet er ikke hentet"}, {XFF: "198.51.100.1"})
    for i in range(40):  # one address, and then many addresses, each inventing ids
        _, _, _ = await post(client, {"session_id": f"fake-{i}", "message": "hej"}, {XFF: "203.0.113.66"})
    statuses = [(await post(client, {"message": "hej"}, {XFF: f"203.0.113.{i}"}))[0] for i in range(10)]
    assert statuses[:3] == [200] * 3 and set(statuses[3:]) == {429}  # full of active sessions: refused
    status, body, headers = await post(client, {"message": "hej"}, {XFF: "203.0.113.200"})
    assert status == 429 and body["message"].startswith("Der er travlt") and int(headers["Retry-After"]) >= 1
    assert svc.sessions.count("203.0.113.66") == 2 and len(svc.sessions) == 6
    status, body, _ = await post(client, {"session_id": citizen["session_id"], "message": "ja"}, {XFF: "198.51.100.1"})
    assert status == 200 and not body["new_session"] and body["intent"] == "affald"


# ---- rate limit -------------------------------------------------------------------------------

async def test_rate_limit_answers_429_with_retry_after_and_danish(runtime, tmp_path, make_client, caplog):
    client = await make_client(service_with(runtime, tmp_path, "  rate_burst: 3\n  rate_per_second: 0.5\n"))
    statuses = [(await post(client, {"message": "hej"}))[0] for _ in range(3)]
    status, body, headers = await post(client, {"message": "hej"})
    assert statuses == [200] * 3 and status == 429 and headers["Retry-After"] == "2"
    assert "hurtigt" in body["message"] and "too many" in body["error"]
    # X-Forwarded-For is not believed unless the peer is a configured proxy
    assert (await post(client, {"message": "hej"}, {XFF: "198.51.100.9"}))[0] == 429
    assert caplog.text.count("chat requests refused") == 1  # once a minute at most, not per request


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(runtime, tmp_path, make_client):
    client = await make_client(service_with(runtime, tmp_path, "  rate_burst: 2\n  trusted_proxies: [127.0.0.0/8]\n"))
    a = [(await post(client, {"message": "hej"}, {XFF: "198.51.100.1"}))[0] for _ in range(3)]
    b = [(await post(client, {"message": "hej"}, {XFF: "9.9.9.9, 198.51.100.2"}))[0] for _ in range(3)]
    assert a == b == [200, 200, 429]


# ---- the pool ---------------------------------------------------------------------------------

class GatedChat(ChatService):
    """The real service, but each reply waits for ``gate`` and notes its thread."""

    gate = threading.Event()
    threads: set[str] = set()

    def reply(self, *args, **kwargs):
        self.threads.add(threading.current_thread().name)
        self.gate.wait(10)
        return super().reply(*args, **kwargs)


async def test_a_saturated_pool_answers_429_fast_and_never_blocks_the_loop(runtime, tmp_path, make_client):
    svc = service_with(runtime, tmp_path, "  rate_burst: 1000\n  workers: 1\n  max_waiting: 3\n  wait_seconds: 0.5\n",
                       cls=GatedChat)
    GatedChat.gate.clear()
    client = await make_client(svc)
    try:
        tasks = [asyncio.ensure_future(post(client, {"message": f"spørgsmål {i}"})) for i in range(20)]
        lag = asyncio.ensure_future(_loop_lag(0.3))
        done, pending = await asyncio.wait(tasks, timeout=0.4)
        fast = [t.result() for t in done]  # 1 working, 3 waiting, the other 16 turned away at once
        assert len(fast) == 16 and {s for s, _, _ in fast} == {429}, [s for s, _, _ in fast]
        assert all(b["message"].startswith("Der er travlt") for _, b, _ in fast) and await lag < 0.1
        done, pending = await asyncio.wait(pending, timeout=0.5)
        assert len(done) == 3 and {t.result()[0] for t in done} == {429}  # no thread within 0.5 s
        GatedChat.gate.set()
        (working,) = pending
        assert (await asyncio.wait_for(working, 5))[0] == 200
    finally:
        GatedChat.gate.set()
    status, body, _ = await post(client, {"message": "Jeg har mistet mit pas"})
    assert status == 200 and body["intent"] == "pas-mistet"
    assert GatedChat.threads and all(name.startswith("chat") for name in GatedChat.threads)


async def _loop_lag(seconds: float) -> float:
    worst, end = 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before - 0.01)
    return worst


async def test_a_bug_in_a_turn_is_a_logged_500_with_json(runtime, tmp_path, make_client, monkeypatch, caplog):
    svc = service_with(runtime, tmp_path)
    client = await make_client(svc)
    monkeypatch.setattr(svc.runtime.engine, "handle", lambda *a: 1 / 0)
    status, body, _ = await post(client, {"message": "hej"})
    assert status == 500 and body["message"] and "chat turn failed" in caplog.text


# ---- the widget -------------------------------------------------------------------------------

WIDGET_DRIVER = """
const sent = [];
function el() {
  return {children: [], textContent: "", disabled: false, className: "",
          appendChild(c) { this.children.push(c); }, scrollIntoView() {}, focus() {},
          querySelector() { return this.button || (this.button = el()); }};
}
const nodes = {};
globalThis.document = {getElementById: id => nodes[id] || (nodes[id] = el()), createElement: () => el()};
const realFetch = globalThis.fetch;
globalThis.fetch = (url, opts) => { sent.push(JSON.parse(opts.body)); return realFetch(BASE + url, opts); };
SCRIPT
(async () => {
  await send("skraldet er ikke hentet");
  await send("ja");
  await send("tak");
  console.log(JSON.stringify({sent, shown: nodes.log.children.map(c => c.textContent)}));
})();
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_widget_sends_the_server_issued_id_and_shows_the_danish_429(runtime, tmp_path, make_client):
    client = await make_client(service_with(runtime, tmp_path, "  rate_burst: 2\n  rate_per_second: 0.1\n"))
    html = chat_api.WIDGET.read_text(encoding="utf-8")
    script = html[html.index("<script>") + len("<script>"):html.index("</script>")]
    js = WIDGET_DRIVER.replace("SCRIPT", script).replace("BASE", json.dumps(f"http://127.0.0.1:{client.port}"))
    proc = await asyncio.create_subprocess_exec("node", "-e", js, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    sent, shown = result["sent"], result["shown"]
    assert sent[0]["session_id"] is None and sent[1]["session_id"] and sent[2]["session_id"] == sent[1]["session_id"]
    assert "Affald og genbrug" in shown[3]  # me, bot (options), me "ja", bot (contact)
    assert shown[-1].startswith("Du sender beskeder meget hurtigt")


# ---- metrics --------------------------------------------------------------------------------------

async def test_chat_requests_and_turns_are_counted_for_prometheus(runtime, tmp_path, make_client):
    from voicebot import metrics

    def value(name: str, **labels) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("voicebot_chat_requests_total", status="200"), value("voicebot_chat_requests_total", status="400"))
    client = await make_client(service_with(runtime, tmp_path))
    status, _, _ = await post(client, {"message": "Jeg har mistet mit pas"})
    bad, _, _ = await post(client, b"{not json")
    assert (status, bad) == (200, 400)
    after = (value("voicebot_chat_requests_total", status="200"), value("voicebot_chat_requests_total", status="400"))
    assert after[0] - before[0] == 1 and after[1] - before[1] == 1
    # the turn itself is counted where it is recorded: only with a store (serve always has one)
    text = metrics.exposition().decode()
    assert "voicebot_chat_requests_total" in text and "voicebot_turn_latency_seconds" in text


# ---- chat.allowed_origins: which sites' pages may use the chat ------------------------------------

def test_origin_patterns():
    from voicebot.chat.origins import OriginPolicy

    policy = OriginPolicy(["https://www.kk.dk", "https://*.kk.dk"])
    assert policy.allows("https://www.kk.dk") and policy.allows("https://borger.kk.dk")
    assert policy.allows("HTTPS://WWW.KK.DK")
    assert not policy.allows("http://www.kk.dk")          # another scheme is another origin
    assert not policy.allows("https://kk.dk.evil.example")
    assert not policy.allows("https://evilkk.dk")         # *.kk.dk is a subdomain, not a suffix
    assert not policy.allows("null")                      # sandboxed frames and file: pages
    assert policy.allows(None)                            # no Origin: not a cross-site page
    assert policy.allows("http://127.0.0.1:8080", own_host="127.0.0.1:8080")  # the bot's own /chat page
    assert OriginPolicy([]).allows("https://anywhere.example")


@pytest.mark.parametrize("bad", ["https://www.kk.dk/", "www.kk.dk", "https://www.kk.dk/chat", "*"])
def test_a_bad_origin_pattern_is_a_located_config_error(tmp_path, bad):
    from voicebot.errors import ConfigError

    site = tmp_path / "site.yaml"
    site.write_text(f"chat:\n  allowed_origins: ['{bad}']\n")
    with pytest.raises(ConfigError, match=r"site.yaml:2: chat.allowed_origins: .* is not an origin"):
        load_settings(site).section("chat", ChatConfig)


async def test_only_allowed_sites_pages_may_chat(runtime, tmp_path, make_client):
    client = await make_client(service_with(runtime, tmp_path, "  allowed_origins: [https://www.kk.dk]\n"))
    ours = {"Origin": "https://www.kk.dk"}
    status, _, headers = await post(client, {"message": "Jeg har mistet mit pas"}, ours)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://www.kk.dk" and headers["Vary"] == "Origin"
    pre = await client.options("/api/chat", headers={**ours, "Access-Control-Request-Method": "POST"})
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://www.kk.dk"
    info = await client.get("/api/chat/info", headers=ours)
    assert info.status == 200 and info.headers["Access-Control-Allow-Origin"] == "https://www.kk.dk"

    theirs = {"Origin": "https://other.example"}
    status, body, headers = await post(client, {"message": "Jeg har mistet mit pas"}, theirs)
    assert status == 403 and "allowed_origins" in body["error"]
    assert "Access-Control-Allow-Origin" not in headers  # the browser hides the answer too
    for resp in (await client.options("/api/chat", headers={**theirs, "Access-Control-Request-Method": "POST"}),
                 await client.get("/api/chat/info", headers=theirs)):
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    # no Origin (curl, monitoring): not a page of another site
    assert (await post(client, {"message": "Jeg har mistet mit pas"}))[0] == 200
    # widget.js itself stays public: any page may load the script (the API then decides)
    assert (await client.get("/widget.js", headers=theirs)).status == 200
