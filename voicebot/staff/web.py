"""The staff pages on the admin listener: ``add_staff_routes(app, settings=..., store_path=..., runtime=...)``.

Server-rendered HTML in Danish, no JavaScript. Every page but the login needs a logged-in
session; every POST needs the session's CSRF token; each user sees only their tenant's records.
Blocking work (password hashing, SQLite, the matcher) runs in threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from voicebot.nlu.matcher import NONE
from voicebot.staff import queries
from voicebot.staff.auth import COOKIE, LoginLimiter, Session, Sessions, csrf_ok
from voicebot.staff.explain import Explanation, explain
from voicebot.staff.proposals import propose_example
from voicebot.staff.users import DEFAULT_PATH, StaffUsers

if TYPE_CHECKING:
    from voicebot.store.readonly import PgSource
    from voicebot.config import Settings
    from voicebot.dialogue.runtime import DialogueRuntime

log = logging.getLogger("voicebot.staff")

REVIEW_LIMIT = 20
MAX_TEXT = 300
TOO_MANY = ("For mange mislykkede login-forsøg. Prøv igen om 5 minutter. / "
            "Too many failed login attempts; try again in 5 minutes.")
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'",
           "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
CHANNELS = (("voice", "Telefon"), ("chat", "Chat"), ("total", "I alt"))
KPI_ROWS = (("conversations", "Samtaler"), ("resolved", "Løst uden medarbejder"),
            ("transferred", "Viderestillinger"), ("survey_mean", "Tilfredshed (gns. 1-5)"))


@dataclasses.dataclass
class StaffSite:
    settings: Settings
    store_path: Path | PgSource   # the record store, read-only (store/readonly.py): SQLite or PostgreSQL
    runtime: DialogueRuntime
    users: StaffUsers
    knowledge_root: Path
    secure_cookies: bool
    sessions: Sessions = dataclasses.field(default_factory=Sessions)
    limiter: LoginLimiter = dataclasses.field(default_factory=LoginLimiter)
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)

    @property
    def low_confidence(self) -> float:
        """Below this a match counts as unsure: the engine's own bar for acting without confirming
        (``conversation.confirm_transfer_below``); the matcher itself decides by score margins."""
        from voicebot.dialogue.texts import ConversationRules

        return self.settings.section("conversation", ConversationRules).confirm_transfer_below


def add_staff_routes(app: web.Application, *, settings: Settings, runtime: DialogueRuntime,
                     store_path: Path | PgSource | None = None, users: StaffUsers | None = None,
                     knowledge_root: Path | None = None) -> StaffSite:
    """Mount ``/staff`` on ``app`` (the admin listener, never the public chat port)."""
    from voicebot.knowledge import KnowledgeConfig
    from voicebot.store.readonly import read_source

    knowledge = settings.section("knowledge", KnowledgeConfig)
    users = users or StaffUsers(settings.path(DEFAULT_PATH))
    site = StaffSite(settings=settings, runtime=runtime,
                     store_path=store_path or read_source(settings), users=users,
                     knowledge_root=knowledge_root or settings.path(knowledge.directory),
                     secure_cookies=settings.web.admin_secure_cookies, sessions=Sessions(store=users))
    h = _Handlers(site)
    app.router.add_get("/staff", h.to_root)
    app.router.add_get("/staff/", h.dashboard)
    app.router.add_get("/staff/login", h.login_form)
    app.router.add_post("/staff/login", h.login)
    app.router.add_post("/staff/logout", h.logout)
    app.router.add_get("/staff/review", h.review)
    app.router.add_post("/staff/review/propose", h.propose)
    app.router.add_get("/staff/suggestions", h.suggestions)
    app.router.add_get("/staff/try", h.try_form)
    app.router.add_post("/staff/try", h.try_answer)
    return site


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class _Handlers:
    def __init__(self, site: StaffSite) -> None:
        self.site = site

    # -- plumbing ------------------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session | None:
        return self.site.sessions.get(request.cookies.get(COOKIE))

    def _set_cookie(self, resp: web.StreamResponse, session: Session) -> None:
        resp.set_cookie(COOKIE, session.id, path="/staff", httponly=True, samesite="Strict",
                        secure=self.site.secure_cookies)

    def _page(self, title: str, body: str, session: Session | None, *, status: int = 200,
              nav: bool = True) -> web.Response:
        user = session.user if session else None
        menu = ""
        if nav and user is not None:
            menu = (f'<nav aria-label="Hovedmenu"><ul><li><a href="/staff/">Overblik</a></li>'
                    f'<li><a href="/staff/review">Gennemgang</a></li>'
                    f'<li><a href="/staff/suggestions">Forslag til nye artikler</a></li>'
                    f'<li><a href="/staff/try">Hvad ville botten svare?</a></li></ul>'
                    f'<form method="post" action="/staff/logout">{self._csrf(session)}'
                    f'<button type="submit">Log ud ({_e(user.name)}, {_e(user.tenant)})</button></form></nav>')
        text = f"""<!doctype html>
<html lang="da"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · Voicebot personale</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:0 1rem;line-height:1.4}}
.skip{{position:absolute;left:-999px}}.skip:focus{{left:1rem;top:1rem;background:#fff;padding:.5rem}}
nav ul{{list-style:none;padding:0;display:flex;gap:1rem;flex-wrap:wrap}}table{{border-collapse:collapse}}
th,td{{border:1px solid #999;padding:.2rem .5rem;text-align:left}}.error{{color:#a00;font-weight:bold}}
.turn{{border-top:2px solid #ccc;margin-top:1rem}}</style></head>
<body><a class="skip" href="#main">Spring til indhold</a>
<header><p>Voicebot · Københavns Borgerservice · personale</p>{menu}</header>
<main id="main"><h1>{_e(title)}</h1>
{body}
</main></body></html>"""
        resp = web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
        resp.headers.update(HEADERS)
        if session is not None:
            self._set_cookie(resp, session)
        return resp

    @staticmethod
    def _csrf(session: Session | None) -> str:
        return f'<input type="hidden" name="csrf" value="{_e(session.csrf if session else "")}">'

    def _user_session(self, request: web.Request) -> Session:
        """The logged-in session, else a redirect to the login page."""
        session = self._session(request)
        if session is None or session.user is None:
            raise web.HTTPSeeOther("/staff/login", headers=HEADERS)
        return session

    async def _post(self, request: web.Request, *, login: bool = False) -> tuple[Session, Any]:
        """The session and form of a POST whose CSRF token matches; 403 otherwise."""
        session = self._session(request)
        form = await request.post()
        if not csrf_ok(session, form.get("csrf")):
            log.warning("staff POST without a valid CSRF token", extra={"path": request.path})
            raise web.HTTPForbidden(text="Ugyldig eller manglende sikkerhedsnøgle (CSRF). Genindlæs siden og "
                                         "prøv igen. / Missing or invalid CSRF token.", headers=HEADERS)
        if not login and session.user is None:
            raise web.HTTPSeeOther("/staff/login", headers=HEADERS)
        return session, form

    # -- login ---------------------------------------------------------------------------------

    async def to_root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/staff/")

    async def login_form(self, request: web.Request, *, message: str = "", status: int = 200,
                         name: str = "") -> web.Response:
        session = self._session(request) or self.site.sessions.new()
        error = f'<p class="error" role="alert">{_e(message)}</p>' if message else ""
        body = f"""{error}<form method="post" action="/staff/login">{self._csrf(session)}
<p><label for="user">Brugernavn</label><br>
<input id="user" name="user" autocomplete="username" required value="{_e(name)}"></p>
<p><label for="password">Adgangskode</label><br>
<input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Log ind</button></p></form>"""
        return self._page("Log ind", body, session, status=status, nav=False)

    async def login(self, request: web.Request) -> web.Response:
        session, form = await self._post(request, login=True)
        name = str(form.get("user", "")).strip().lower()[:64]
        password = str(form.get("password", ""))
        client = request.remote or "?"
        if self.site.limiter.blocked(client, name):
            log.warning("staff login rate-limited", extra={"client": client, "user": name})
            return await self.login_form(request, message=TOO_MANY, status=429, name=name)
        user = await asyncio.to_thread(self.site.users.verify, name, password) if name and password else None
        if user is None:
            self.site.limiter.failed(client, name)
            log.warning("staff login failed", extra={"client": client, "user": name})
            return await self.login_form(request, message="Forkert brugernavn eller adgangskode.",
                                         status=401, name=name)
        self.site.sessions.drop(session.id)
        fresh = self.site.sessions.new(user)  # a new id at login: no session fixation
        log.info("staff login", extra={"user": user.name, "tenant": user.tenant})
        resp = _see_other("/staff/")
        self._set_cookie(resp, fresh)
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        session, _ = await self._post(request, login=True)
        self.site.sessions.drop(session.id)
        resp = _see_other("/staff/login")
        resp.del_cookie(COOKIE, path="/staff")
        return resp

    # -- dashboard -----------------------------------------------------------------------------

    def _departments(self) -> tuple[dict[str, str], str]:
        from voicebot.knowledge.departments import HUMAN
        from voicebot.report.definitions import HUMAN_TARGET

        directory = self.site.runtime.kb.directory
        if directory is None:
            return {}, HUMAN_TARGET
        names = {d.target.removeprefix("dept-"): d.name for d in directory.departments.values()}
        human = directory.departments.get(HUMAN)
        return names, human.target.removeprefix("dept-") if human else HUMAN_TARGET

    async def dashboard(self, request: web.Request) -> web.Response:
        session = self._user_session(request)
        departments, human = self._departments()
        data = await asyncio.to_thread(queries.dashboard, self.site.store_path, session.user.tenant,
                                       self.site.now(), departments, human)
        parts = [f"<p>Tal for <strong>{_e(session.user.tenant)}</strong>, uden testopkald. "
                 "Hele rapporten: <code>voicebot report</code>.</p>"]
        for key, heading in (("today", f"I dag ({data['day_name']})"),
                             ("month", f"Denne måned ({data['month_name']})")):
            parts.append(f"<section aria-labelledby='h-{key}'><h2 id='h-{key}'>{_e(heading)}</h2>")
            block = data[key]
            if block is None:
                parts.append("<p>Ingen samtaler er registreret endnu.</p></section>")
                continue
            parts.append(_kpi_table(block["kpis"], heading))
            parts.append(f"<h3>Viderestillinger pr. afdeling</h3>{_transfer_table(block['transfers'])}")
            busiest = ", ".join(f"kl. {h:02d}-{(h + 1) % 24:02d} ({n})" for h, n in block["busiest"])
            parts.append(f"<h3>Travleste timer</h3><p>{_e(busiest) or 'Ingen samtaler.'}</p></section>")
        return self._page("Overblik", "\n".join(parts), session)

    # -- review --------------------------------------------------------------------------------

    def _serves(self, session: Session) -> bool:
        """This process holds the user's tenant's knowledge (explanations and proposals need it)."""
        return session.user.tenant in self.site.runtime.kb.tenants

    async def review(self, request: web.Request) -> web.Response:
        session = self._user_session(request)
        turns = await asyncio.to_thread(queries.review_turns, self.site.store_path, session.user.tenant,
                                        self.site.low_confidence, REVIEW_LIMIT)
        engine = self.site.runtime.engine  # one knowledge base for the whole page, even during a reload
        serves = self._serves(session)
        why = await asyncio.to_thread(lambda: [explain(t.heard, engine) for t in turns]) if serves else []
        notice = request.query.get("saved")
        parts = []
        if notice:
            parts.append(f'<p role="status">Forslaget er gemt som <code>{_e(notice)}</code>. '
                         "Den levende viden er uændret; en redaktør skal godkende det.</p>")
        parts.append(f"<p>Ikke-løste samtaler: ytringer som botten ikke forstod eller var usikker på "
                     f"(sikkerhed under {self.site.low_confidence:.2f}), nyeste først (højst {REVIEW_LIMIT}). "
                     "Teksten er den gemte, anonymiserede tekst. Forklaringen er den nuværende matchers.</p>")
        if not serves:
            parts.append("<p>Denne proces kører ikke din organisations viden, så forklaringer og forslag "
                         "er ikke tilgængelige her.</p>")
        if not turns:
            parts.append("<p>Intet at gennemgå.</p>")
        titles = {a.id: a.title for a in engine.kb.articles}
        own = {a.id: a.title for a in engine.kb.articles if a.tenant == session.user.tenant}
        for n, turn in enumerate(turns):
            parts.append(f"<section class='turn' aria-labelledby='t{n}'><h2 id='t{n}'>“{_e(turn.heard)}”</h2>"
                         f"<p>{_e(turn.at)} · {_e(dict(CHANNELS).get(turn.channel, turn.channel))} · "
                         f"udfald: {_e(turn.outcome or 'i gang')} · dengang: emne {_e(turn.intent or '-')}, "
                         f"sikkerhed {_e('-' if turn.confidence is None else f'{turn.confidence:.2f}')}, "
                         f"beslutning {_e(turn.decision)}</p>")
            if serves:
                ex = why[n]
                parts.append(_explanation(ex, titles, heading_level=3, show_answer=False))
                parts.append(_propose_form(session, turn, ex, own, n))
            parts.append("</section>")
        return self._page("Gennemgang", "\n".join(parts), session)

    async def propose(self, request: web.Request) -> web.Response:
        session, form = await self._post(request)
        user = session.user
        article = str(form.get("article", ""))
        try:
            index = int(str(form.get("turn", "")))
        except ValueError:
            raise web.HTTPBadRequest(text="turn: not a number", headers=HEADERS) from None
        conversation = str(form.get("conversation", ""))[:64]
        engine = self.site.runtime.engine
        # a proposal goes to the user's own tenant's article: no editing another tenant's knowledge
        if not self._serves(session) or article not in engine.kb.by_id or \
                engine.kb.by_id[article].tenant != user.tenant:
            raise web.HTTPBadRequest(text="Ukendt artikel. / Unknown article.", headers=HEADERS)
        text = await asyncio.to_thread(queries.find_turn, self.site.store_path, user.tenant, conversation, index)
        if text is None:  # not there, or another tenant's: the same answer
            raise web.HTTPNotFound(text="Ytringen findes ikke. / No such turn.", headers=HEADERS)
        path = await asyncio.to_thread(propose_example, self.site.knowledge_root, user.tenant, article, text,
                                       user=user.name, source={"conversation": conversation, "turn": index},
                                       now=self.site.now())
        log.info("staff proposal written", extra={"user": user.name, "article": article, "file": path.name})
        raise web.HTTPSeeOther(f"/staff/review?saved={path.name}", headers=HEADERS)

    # -- try -------------------------------------------------------------------------------------

    def _try_page(self, session: Session, text: str = "", ex: Explanation | None = None) -> web.Response:
        body = [f"""<form method="post" action="/staff/try">{self._csrf(session)}
<p><label for="q">Skriv en sætning, som en borger ville</label><br>
<input id="q" name="q" size="60" maxlength="{MAX_TEXT}" required value="{_e(text)}"></p>
<p><button type="submit">Hvad ville botten svare?</button></p></form>"""]
        if not self._serves(session):
            body.append("<p>Denne proces kører ikke din organisations viden.</p>")
        if ex is not None:
            titles = {a.id: a.title for a in self.site.runtime.kb.articles}
            body.append(_explanation(ex, titles, heading_level=2, show_answer=True))
        return self._page("Hvad ville botten svare?", "\n".join(body), session)

    async def suggestions(self, request: web.Request) -> web.Response:
        """Unrecognized phrasings of the last ``days`` grouped by meaning: candidate articles."""
        from voicebot.staff.suggestions import suggest, unrecognized_texts

        session = self._user_session(request)
        try:
            days = min(366, max(1, int(request.query.get("days", "30"))))
        except ValueError:
            days = 30
        body = [f"""<form method="get" action="/staff/suggestions"><p><label for="days">Periode (dage)</label>
<input id="days" name="days" type="number" min="1" max="366" value="{days}">
<button type="submit">Vis</button></p></form>
<p>Ytringer, som botten ikke forstod de seneste {days} dage, grupperet efter betydning (samme
sprogmodel som botten bruger). En stor gruppe er et bud på en ny artikel; står der et nærmeste
emne, mangler den artikel måske bare eksempler.</p>"""]
        if not self._serves(session):
            body.append("<p>Denne proces kører ikke din organisations viden, så grupperingen er ikke "
                        "tilgængelig her.</p>")
            return self._page("Forslag til nye artikler", "\n".join(body), session)
        since = self.site.now() - dt.timedelta(days=days)
        matcher = self.site.runtime.engine.matcher
        groups = await asyncio.to_thread(
            lambda: suggest(unrecognized_texts(self.site.store_path, session.user.tenant, since), matcher))
        titles = {a.id: a.title for a in self.site.runtime.engine.kb.articles}
        if not groups:
            body.append("<p>Ingen grupper endnu: for få ikke-forståede ytringer, der ligner hinanden.</p>")
        for n, g in enumerate(groups):
            near = (f"{_e(titles.get(g.nearest_article, g.nearest_article))} (score {g.nearest_score:.2f})"
                    if g.nearest_article else "-")
            items = "".join(f"<li>“{_e(text)}”{f' ({times} gange)' if times > 1 else ''}</li>"
                            for text, times in g.examples[:8])
            body.append(f"<section aria-labelledby='g{n}'><h2 id='g{n}'>Gruppe {n + 1}: {g.size} ytringer</h2>"
                        f"<p>Nærmeste eksisterende emne: {near}</p><ul>{items}</ul></section>")
        return self._page("Forslag til nye artikler", "\n".join(body), session)

    async def try_form(self, request: web.Request) -> web.Response:
        return self._try_page(self._user_session(request))

    async def try_answer(self, request: web.Request) -> web.Response:
        session, form = await self._post(request)
        text = str(form.get("q", "")).strip()[:MAX_TEXT]
        if not text or not self._serves(session):
            return self._try_page(session, text)
        engine = self.site.runtime.engine
        return self._try_page(session, text, await asyncio.to_thread(explain, text, engine))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": location})


# -- HTML pieces ---------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _kpi_table(kpis: dict[str, dict], caption: str) -> str:
    head = "".join(f"<th scope='col'>{name}</th>" for _, name in CHANNELS)
    rows = "".join(f"<tr><th scope='row'>{label}</th>"
                   + "".join(f"<td>{_e(_fmt(kpis.get(ch, {}).get(key)))}</td>" for ch, _ in CHANNELS) + "</tr>"
                   for key, label in KPI_ROWS)
    return (f"<table><caption>Nøgletal, {_e(caption)}</caption><thead><tr><th scope='col'>Nøgletal</th>{head}"
            f"</tr></thead><tbody>{rows}</tbody></table>")


def _transfer_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>Ingen viderestillinger.</p>"
    head = "".join(f"<th scope='col'>{name}</th>" for _, name in CHANNELS)
    body = "".join(f"<tr><th scope='row'>{_e(r.get('department') or r['target'])}</th>"
                   + "".join(f"<td>{r.get(ch, 0)}</td>" for ch, _ in CHANNELS) + "</tr>" for r in rows)
    return f"<table><thead><tr><th scope='col'>Afdeling</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def _explanation(ex: Explanation, titles: dict[str, str], *, heading_level: int, show_answer: bool) -> str:
    h = f"h{heading_level}"
    out = []
    if show_answer:
        out.append(f"<{h}>Svar</{h}><blockquote>{_e(ex.answer).replace(chr(10), '<br>')}</blockquote>")
    out.append(f"<{h}>Hvorfor</{h}><p>{_e(ex.reason)}</p>")
    r = ex.result
    if r is not None:
        ranked = "".join(f"<tr><td>{_e(ex.title(i, titles))}</td><td>{_e(i)}</td><td>{s:.2f}</td></tr>"
                         for i, s in r.ranked)
        runner = (f"Nummer to: {_e(ex.title(ex.runner_up[0], titles))} (afstand {r.margin:.2f})."
                  if ex.runner_up else "")
        out.append(f"<p>Beslutning: <strong>{_e(r.decision)}</strong>, emne {_e(r.intent)}, sikkerhed "
                   f"{r.confidence:.2f}. {runner}</p>"
                   f"<table><caption>Bedste emner (samlet score)</caption><thead><tr><th scope='col'>Emne</th>"
                   f"<th scope='col'>Id</th><th scope='col'>Score</th></tr></thead><tbody>{ranked}</tbody></table>")
    if ex.rules:
        rules = "".join(f"<li>{_e(x['intent'])}: nøgleord {_e(', '.join(x['keywords']) or '-')}"
                        f"{', mønster ' + _e(x['regex']) if x['regex'] else ''} (vægt {x['weight']:.2f})</li>"
                        for x in ex.rules)
        out.append(f"<p>Regler der slog til:</p><ul>{rules}</ul>")
    else:
        out.append("<p>Ingen regler slog til.</p>")
    if ex.examples:
        rows = "".join(f"<tr><td>{_e(x['example'])}</td><td>{_e(ex.title(x['intent'], titles))}</td>"
                       f"<td>{_e(_fmt(x['embedding']))}</td><td>{_e(_fmt(x['ngram']))}</td></tr>"
                       for x in ex.examples)
        out.append("<table><caption>Nærmeste eksempler</caption><thead><tr><th scope='col'>Eksempel</th>"
                   "<th scope='col'>Emne</th><th scope='col'>Betydningslighed</th><th scope='col'>Tegnlighed</th>"
                   f"</tr></thead><tbody>{rows}</tbody></table>")
    return "\n".join(out)


def _propose_form(session: Session, turn: queries.ReviewTurn, ex: Explanation, titles: dict[str, str],
                  n: int) -> str:
    guess = next((i for i, _ in (ex.result.ranked if ex.result else ()) if i != NONE), None)
    options = "".join(f"<option value='{_e(a)}'{' selected' if a == guess else ''}>{_e(t)} ({_e(a)})</option>"
                      for a, t in sorted(titles.items(), key=lambda kv: kv[1].lower()))
    return (f"<form method='post' action='/staff/review/propose'>{_Handlers._csrf(session)}"
            f"<input type='hidden' name='conversation' value='{_e(turn.conversation_id)}'>"
            f"<input type='hidden' name='turn' value='{turn.index}'>"
            f"<p><label for='a{n}'>Tilføj som eksempel til artikel</label> <select id='a{n}' name='article'>"
            f"{options}</select> <button type='submit'>Foreslå</button></p></form>")
