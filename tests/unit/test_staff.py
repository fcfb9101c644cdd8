"""The staff pages (/staff) on a real aiohttp server on 127.0.0.1, with a real record store in
tmp_path, real argon2 accounts and the real knowledge and matcher: login, cookies, CSRF, the
login rate limit, tenant isolation, the review's reasons, proposals and "what would the bot answer"."""

from __future__ import annotations

import html
import io
import re
import shutil
import sqlite3

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voicebot.chat import build_chat_service
from voicebot.cli import build_parser
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.knowledge import load_for_settings
from voicebot.staff import StaffUsers, add_staff_routes, explain
from voicebot.staff.auth import LoginLimiter
from voicebot.store.base import Turn
from voicebot.store.sqlite import SqliteStore

PASSWORD = "korrekt-hest-batteri"
OTHER_PASSWORD = "en-helt-anden-kode"
KFF_MISS = "min nabo larmer hele natten"
FRB_MISS = "hemmelig frederiksberg tekst"


@pytest.fixture(scope="module")
def runtime():
    return build_chat_service(load_settings()).runtime


def add_user(db, name, tenant, password, monkeypatch, capsys) -> str:
    """``voicebot staff add`` as parsed by the CLI (run directly: main() would install log handlers)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    args = build_parser().parse_args(["staff", "add", name, "--tenant", tenant, "--password-stdin", "--db", str(db)])
    assert args.func(args) == 0
    out = capsys.readouterr()
    return out.out + out.err


def record(store, tenant, channel, turns, outcome):
    cid = store.start_conversation(channel=channel, tenant=tenant)
    for i, (heard, intent, confidence, decision) in enumerate(turns):
        store.add_turn(cid, Turn(index=i, heard=heard, intent=intent, confidence=confidence, decision=decision))
    store.finish_conversation(cid, outcome, intents=[t[1] for t in turns if t[1] and t[1] != "none"])
    return cid


@pytest.fixture
def world(tmp_path, monkeypatch, capsys):
    """Two tenants' records, two users, a copy of the knowledge to propose into."""
    users_db = tmp_path / "staff.db"
    out = add_user(users_db, "anna", "kff", PASSWORD, monkeypatch, capsys)
    assert PASSWORD not in out
    add_user(users_db, "bo", "frb", OTHER_PASSWORD, monkeypatch, capsys)
    store = SqliteStore(tmp_path / "voicebot.db")
    start = ("(start)", None, None, "start")
    kff_miss = record(store, "kff", "voice",
                      [start, (KFF_MISS, "none", 0.9, "rephrase"), ("(lagt på)", None, None, "end")], "abandoned")
    record(store, "kff", "chat", [start, ("jeg har mistet mit pas", "pas-mistet", 0.95, "answer")], "resolved")
    frb_miss = None
    for _ in range(3):
        frb_miss = record(store, "frb", "chat", [start, (FRB_MISS, "none", 0.8, "rephrase")], "transferred:human-queue")
    store.close()
    knowledge = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    return {"tmp": tmp_path, "users_db": users_db, "store_path": tmp_path / "voicebot.db", "knowledge": knowledge,
            "kff_miss": kff_miss, "frb_miss": frb_miss}


@pytest.fixture
async def make_client(runtime, world):
    clients = []

    async def make(secure: bool = False):
        site_yaml = world["tmp"] / "site.yaml"
        site_yaml.write_text(f"web:\n  admin_secure_cookies: {'true' if secure else 'false'}\n")
        app = web.Application()
        add_staff_routes(app, settings=load_settings(site_yaml), runtime=runtime, store_path=world["store_path"],
                         users=StaffUsers(world["users_db"]), knowledge_root=world["knowledge"])
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def login(client, user="anna", password=PASSWORD, **kw):
    page = await (await client.get("/staff/login")).text()
    return await client.post("/staff/login", data={"csrf": csrf_of(page), "user": user, "password": password}, **kw)


# ---- accounts ---------------------------------------------------------------------------------

def test_staff_add_stores_an_argon2_hash_never_the_password(world):
    db = sqlite3.connect(world["users_db"])
    rows = dict(db.execute("SELECT name, password_hash FROM staff_users").fetchall())
    tenants = dict(db.execute("SELECT name, tenant FROM staff_users").fetchall())
    db.close()
    assert tenants == {"anna": "kff", "bo": "frb"}
    assert rows["anna"].startswith("$argon2id$") and PASSWORD not in rows["anna"]
    assert PASSWORD.encode() not in world["users_db"].read_bytes()
    users = StaffUsers(world["users_db"])
    assert users.verify("anna", PASSWORD).tenant == "kff"
    assert users.verify("anna", OTHER_PASSWORD) is None and users.verify("nobody", PASSWORD) is None


# ---- login, cookies, CSRF, rate limit ----------------------------------------------------------

async def test_pages_redirect_to_login_when_not_logged_in(make_client):
    client = await make_client()
    for path in ("/staff/", "/staff/review", "/staff/try"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/staff/login", path
    resp = await client.get("/staff", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/staff/"
    page = await (await client.get("/staff/login")).text()
    assert '<label for="user">' in page and '<label for="password">' in page and 'href="#main"' in page


async def test_login_wrong_then_right(make_client):
    client = await make_client()
    resp = await login(client, password="forkert-forkert")
    assert resp.status == 401 and "Forkert brugernavn eller adgangskode" in await resp.text()
    assert PASSWORD not in await resp.text()
    resp = await login(client, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/staff/"
    page = await (await client.get("/staff/")).text()
    assert "<h1>Overblik</h1>" in page and "anna" in page


@pytest.mark.parametrize("secure", [False, True])
async def test_session_cookie_flags(make_client, secure):
    client = await make_client(secure=secure)
    resp = await client.get("/staff/login")
    anonymous = resp.headers["Set-Cookie"]
    session = re.match(r"staff_session=([^;]+);", anonymous).group(1)
    # sent by hand: the client's cookie jar keeps a Secure cookie off plain http, as a browser would
    resp = await client.post("/staff/login", headers={"Cookie": f"staff_session={session}"}, allow_redirects=False,
                             data={"csrf": csrf_of(await resp.text()), "user": "anna", "password": PASSWORD})
    assert resp.status == 303
    logged_in = resp.headers["Set-Cookie"]
    assert session not in logged_in  # a new session id at login
    for cookie in (anonymous, logged_in):
        assert cookie.startswith("staff_session=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/staff" in cookie
        assert ("Secure" in cookie) is secure


async def test_posts_need_the_sessions_csrf_token(make_client):
    client = await make_client()
    await login(client)
    assert (await client.post("/staff/try", data={"q": "pas"})).status == 403
    assert (await client.post("/staff/try", data={"q": "pas", "csrf": "forkert"})).status == 403
    page = await (await client.get("/staff/try")).text()
    assert (await client.post("/staff/try", data={"q": "pas", "csrf": csrf_of(page)})).status == 200
    # the login form too: without the token of the visitor's session nothing is checked
    fresh = await make_client()
    resp = await fresh.post("/staff/login", data={"user": "anna", "password": PASSWORD})
    assert resp.status == 403


async def test_login_rate_limit(make_client):
    client = await make_client()
    for _ in range(5):
        assert (await login(client, password="forkert-forkert")).status == 401
    resp = await login(client)  # even the right password, until the failures age out
    assert resp.status == 429
    text = await resp.text()
    assert "For mange mislykkede login-forsøg" in text and "Too many failed login attempts" in text


def test_rate_limit_counts_per_user_and_per_client():
    now = [0.0]
    limiter = LoginLimiter(limit=5, window=300, clock=lambda: now[0])
    for n in range(5):
        limiter.failed(f"10.0.0.{n}", "anna")  # five clients, one account
    assert limiter.blocked("10.0.0.99", "anna") and not limiter.blocked("10.0.0.99", "bo")
    for n in range(5):
        limiter.failed("10.0.1.1", f"user{n}")  # one client, five accounts
    assert limiter.blocked("10.0.1.1", "bo")
    now[0] = 301.0
    assert not limiter.blocked("10.0.0.99", "anna") and not limiter.blocked("10.0.1.1", "bo")


async def test_logout(make_client):
    client = await make_client()
    page = await (await login(client)).text()
    resp = await client.post("/staff/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert resp.status == 303
    assert (await client.get("/staff/", allow_redirects=False)).status == 303


async def test_a_login_outlives_a_restart_and_holds_on_another_instance(make_client, world, monkeypatch, capsys):
    first = await make_client()
    page = await (await login(first)).text()
    cookie = first.session.cookie_jar.filter_cookies(first.make_url("/staff/"))["staff_session"].value
    assert cookie not in world["users_db"].read_bytes().decode("latin-1")  # only its hash is stored
    await first.close()  # the bot restarts (or the next request reaches a second instance)
    second = await make_client()
    second.session.cookie_jar.update_cookies({"staff_session": cookie})
    resp = await second.get("/staff/", allow_redirects=False)
    assert resp.status == 200 and "Log ud" in await resp.text()
    # logging out on one instance ends the session on every instance
    third = await make_client()
    third.session.cookie_jar.update_cookies({"staff_session": cookie})
    assert (await third.get("/staff/", allow_redirects=False)).status == 200
    await second.post("/staff/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert (await third.get("/staff/", allow_redirects=False)).status == 303


async def test_a_new_password_ends_the_users_sessions(make_client, world, monkeypatch, capsys):
    client = await make_client()
    await login(client)
    assert (await client.get("/staff/", allow_redirects=False)).status == 200
    add_user(world["users_db"], "anna", "kff", "et helt andet kodeord", monkeypatch, capsys)
    assert (await client.get("/staff/", allow_redirects=False)).status == 303


def test_stored_sessions_expire_when_idle(world):
    from voicebot.staff.auth import IDLE_TTL, Sessions

    now = [1_000_000.0]
    users = StaffUsers(world["users_db"])
    session = Sessions(lambda: now[0], store=users).new(users.get("anna"))
    now[0] += IDLE_TTL - 10
    assert Sessions(lambda: now[0], store=users).get(session.id) is not None  # another process: still in
    now[0] += 120
    assert Sessions(lambda: now[0], store=users).get(session.id) is not None  # touched 130 s ago
    now[0] += IDLE_TTL + 1
    assert Sessions(lambda: now[0], store=users).get(session.id) is None
    users.close()


# ---- tenants ---------------------------------------------------------------------------------

def conversations_row(page: str) -> list[str]:
    """The "Samtaler" row (voice, chat, total) of today's table."""
    row = re.search(r"<th scope='row'>Samtaler</th>(.*?)</tr>", page).group(1)
    return re.findall(r"<td>(.*?)</td>", row)


async def test_each_user_sees_only_their_tenant(make_client, world):
    anna = await make_client()
    await login(anna)
    dashboard = await (await anna.get("/staff/")).text()
    assert conversations_row(dashboard) == ["1", "1", "2"]
    review = await (await anna.get("/staff/review")).text()
    assert html.escape(KFF_MISS) in review and FRB_MISS not in review
    # another tenant's turn cannot be proposed from (same answer as a turn that does not exist)
    resp = await anna.post("/staff/review/propose", data={"csrf": csrf_of(review), "article": "pas",
                                                          "conversation": world["frb_miss"], "turn": "1"})
    assert resp.status == 404
    bo = await make_client()
    await login(bo, "bo", OTHER_PASSWORD)
    assert conversations_row(await (await bo.get("/staff/")).text()) == ["0", "3", "3"]
    review = await (await bo.get("/staff/review")).text()
    assert FRB_MISS in review and KFF_MISS not in review


# ---- review, proposals, try ----------------------------------------------------------------------

async def test_review_lists_a_none_turn_with_its_why(make_client):
    client = await make_client()
    await login(client)
    page = await (await client.get("/staff/review")).text()
    section = page[page.index(html.escape(KFF_MISS)):]
    assert "Hvorfor" in section and "Nærmeste eksempler" in section and "uden for emnet (none)" in section
    assert "beslutning rephrase" in section and "Bedste emner" in section
    assert "Gennemgang</h1>" in page and "(lagt på)" not in page  # events are not reviewed


async def test_add_as_example_writes_a_proposal_and_leaves_the_knowledge_alone(make_client, world):
    settings = load_settings()
    directory = world["knowledge"] / "kff"
    before = {a.id: a.examples for a in load_for_settings(settings, directory).articles}
    client = await make_client()
    await login(client)
    page = await (await client.get("/staff/review")).text()
    resp = await client.post("/staff/review/propose", data={"csrf": csrf_of(page), "article": "pas",
                                                            "conversation": world["kff_miss"], "turn": "1"},
                             allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/staff/review?saved=_")
    files = list((directory / "_proposals").glob("*.yaml"))
    assert len(files) == 1 and files[0].name.startswith("_") and files[0].name.endswith("-pas.yaml")
    text = files[0].read_text(encoding="utf-8")
    assert "article: pas" in text and KFF_MISS in text and "proposed_by: anna" in text
    after = {a.id: a.examples for a in load_for_settings(settings, directory).articles}
    assert after == before and all(KFF_MISS not in ex for ex in after.values())
    # an unknown article, or no CSRF token, writes nothing
    assert (await client.post("/staff/review/propose", data={"csrf": csrf_of(page), "article": "../../etc",
                                                             "conversation": world["kff_miss"], "turn": "1"})
            ).status == 400
    assert (await client.post("/staff/review/propose", data={"article": "pas", "conversation": world["kff_miss"],
                                                             "turn": "1"})).status == 403
    assert len(list((directory / "_proposals").glob("*.yaml"))) == 1


async def test_try_shows_the_answer_and_why(make_client, runtime):
    client = await make_client()
    await login(client)
    page = await (await client.get("/staff/try")).text()
    assert '<label for="q">' in page
    resp = await client.post("/staff/try", data={"csrf": csrf_of(page), "q": "Jeg har mistet mit pas"})
    page = await resp.text()
    answer = runtime.kb.by_id["pas-mistet"].answer_chat
    assert resp.status == 200 and html.escape(answer[:40]) in page
    assert "Emnet pas-mistet vandt" in page and "Regler der slog til" in page and "Nummer to" in page


# ---- the matcher's evidence ---------------------------------------------------------------------

def test_matcher_evidence_is_read_only_and_names_rules_and_examples(runtime):
    matcher = runtime.engine.matcher
    before = matcher.match("Jeg har mistet mit pas")
    ev = matcher.evidence("Jeg har mistet mit pas", k=3)
    assert ev["text"] and len(ev["examples"]) == 3
    assert ev["rules"][0]["intent"] == "pas-mistet"
    assert ev["examples"][0] == {"intent": "pas-mistet", "example": "Jeg har mistet mit pas",
                                 "ngram": pytest.approx(1.0, abs=0.01), "embedding": pytest.approx(1.0, abs=0.01)}
    assert matcher.match("Jeg har mistet mit pas") == before
    assert matcher.evidence("   ") == {"text": "", "rules": [], "examples": []}
    ex = explain("min nabo larmer", runtime.engine)
    assert ex.result.decision == "none" and ex.examples[0]["intent"] == "none"


# ---- suggestions ------------------------------------------------------------------------------

async def test_suggestions_group_unrecognized_phrasings_by_meaning(make_client, world):
    store = SqliteStore(world["store_path"])
    start = ("(start)", None, None, "start")
    dog = ["Hvordan får jeg et hundetegn", "Jeg skal registrere min hund", "Hvor betaler jeg hundeskat",
           "min hund skal have tegn"]
    fine = ["Jeg har fået en parkeringsbøde", "Hvordan klager jeg over en p-bøde", "bøde for parkering hvad gør jeg",
            "Jeg har fået en parkeringsbøde"]
    lonely = ["Hvad koster en kolonihave", "Kan I hjælpe med min computer", "Hvornår er der valg"]
    for text in dog + fine + lonely:
        record(store, "kff", "chat", [start, (text, "none", 0.5, "rephrase")], "abandoned")
    record(store, "frb", "chat", [start, ("Hvor betaler jeg hundeskat i Frederiksberg", "none", 0.5, "rephrase")],
           "abandoned")
    store.close()
    client = await make_client()
    await login(client)
    page = html.unescape(await (await client.get("/staff/suggestions?days=7")).text())
    groups = re.findall(r"<section aria-labelledby='g\d+'>(.*?)</section>", page, re.S)
    members = [set(re.findall(r"“(.*?)”", g)) for g in groups]
    assert set(dog) in members and set(fine) in members  # one group per topic, none mixed
    assert "4 ytringer" in groups[members.index(set(fine))]  # the repeated phrasing counts twice
    assert not any(t in g for g in groups for t in lonely)  # a one-off is no candidate article
    assert "Frederiksberg" not in page  # another tenant's phrasings never show
