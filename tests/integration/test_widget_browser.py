"""The chat widget in a real browser: Debian's chromium, headless, driven by Playwright.

Two in-process servers on 127.0.0.1: the voicebot's chat app (API, /widget.js, a real SqliteStore)
and a separate "municipal" host page on another port that carries the one-line tag, so the widget
runs cross-origin the way it will on kk.dk. No Asterisk, no network, no downloaded browser.
Set WIDGET_SCREENSHOTS=1 to (re)write docs/screenshots/widget*.png.
"""

from __future__ import annotations

import asyncio

import os
import re
import shutil

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voicebot.chat import add_chat_routes, build_chat_service
from voicebot.chat.service import ChatService
from voicebot.config import PROJECT_ROOT, load_settings
from voicebot.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.async_api",
                                     reason="playwright is not installed (pip install -e .[test])")
axe_api = pytest.importorskip("axe_playwright_python.async_playwright",
                              reason="axe-playwright-python is not installed (pip install -e .[test])")
CHROMIUM = shutil.which("chromium")

HOST_PAGE = """<!doctype html>
<html lang="da"><head><meta charset="utf-8"><title>Københavns Kommune - Borgerservice</title>
<style>
  body {{ font-family: Georgia, serif; font-size: 19px; line-height: 1.7; color: rgb(34, 34, 34); margin: 0; }}
  header {{ background: rgb(139, 26, 26); color: #fff; padding: 12px 24px; }}
  main {{ padding: 12px 24px; }}
  h1 {{ color: rgb(139, 26, 26); font-size: 34px; }}
  p {{ margin: 0 0 16px; }}
  button {{ background: rgb(139, 26, 26); color: rgb(255, 255, 255); border: 0; padding: 8px 16px; font: inherit; }}
  a {{ color: rgb(139, 26, 26); }}
</style></head>
<body><header><strong>Københavns Kommune</strong></header>
<main><h1>Borgerservice</h1>
<p id="intro">Her kan du læse om pas, kørekort og sundhedskort. <a href="#">Læs mere</a></p>
<p><button type="button" id="book">Bestil tid</button></p></main>
{tag}
</body></html>"""

HOST_STYLES = ["font-family", "font-size", "line-height", "color", "background-color", "margin-top", "padding-left",
               "box-sizing"]
ACTIVE = """() => { let a = document.activeElement;
  while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
  return a ? (a.getAttribute('aria-label') || a.textContent || a.tagName).trim() : ''; }"""


@pytest.fixture(scope="module")
def service():
    return build_chat_service(load_settings())


@pytest.fixture
async def site(service, tmp_path):
    """(host page URL, store): the chat app with a real SQLite store, and a host site elsewhere."""
    store = SqliteStore(tmp_path / "chat.db")
    svc = ChatService(service.settings, service.runtime, store)
    app = web.Application()
    add_chat_routes(app, svc)
    async with TestServer(app, host="127.0.0.1") as api:
        tag = f'<script src="http://127.0.0.1:{api.port}/widget.js" data-tenant="kff" defer></script>'
        host = web.Application()

        async def with_tag(request):
            return web.Response(text=HOST_PAGE.format(tag=tag), content_type="text/html")

        async def without_tag(request):
            return web.Response(text=HOST_PAGE.format(tag=""), content_type="text/html")

        host.router.add_get("/", with_tag)
        host.router.add_get("/plain", without_tag)
        async with TestServer(host, host="127.0.0.1") as page_server:
            yield {"host": f"http://127.0.0.1:{page_server.port}", "api": f"http://127.0.0.1:{api.port}",
                   "store": store, "service": svc}
    store.close()


@pytest.fixture
async def page():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (make setup installs it: apt-get install chromium)")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-dev-shm-usage"])
        context = await browser.new_context(viewport={"width": 1100, "height": 760}, locale="da-DK")
        pg = await context.new_page()
        pg.set_default_timeout(15000)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        await browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


async def _open(page, url):
    await page.goto(url)
    await page.wait_for_function("() => !!window.KkChatWidget && !!document.querySelector('kk-chat-widget')")
    return page.get_by_role("button", name="Chat med Borgerservice")


async def _ask(page, text):
    box = page.get_by_label("Skriv dit spørgsmål")
    await box.fill(text)
    await box.press("Enter")


async def test_ask_clarify_rate_and_the_record(site, page):
    expect = playwright_api.expect
    launcher = await _open(page, site["host"] + "/")
    await launcher.click()
    dialog = page.get_by_role("dialog", name=re.compile("Borgerservice"))
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("digital assistent")  # the note: a bot, and what is stored
    await expect(dialog).to_contain_text("gemmer")
    live = page.locator('[aria-live="polite"]')
    await expect(live).to_have_count(1)

    await _ask(page, "Jeg har mistet mit pas")
    await expect(live).to_contain_text("politi")  # the answer reaches the screen reader's live region
    link = live.get_by_role("link", name=re.compile("Læs mere"))
    await expect(link.first).to_have_attribute("href", re.compile(r"^https://"))
    sid = await page.evaluate("() => sessionStorage.getItem('kkChatWidget:kff:session')")
    assert sid and re.match(r"^[A-Za-z0-9_-]+$", sid)

    await _ask(page, "kort")  # ambiguous: the engine asks which card, with options
    option = page.get_by_role("button", name="Dansk ID-kort")
    await expect(option).to_be_visible()
    await option.click()
    await expect(live).to_contain_text("ID-kort bestilles")
    await expect(option).to_have_count(0)  # answered options go away

    await _ask(page, "tak for hjælpen")
    four = page.get_by_role("button", name=re.compile(r"^4 – tilfreds"))
    await expect(page.get_by_role("group", name=re.compile("Vurdér hjælpen"))).to_be_visible()
    await four.click()
    await expect(live).to_contain_text("Tak for din vurdering")
    assert await page.evaluate("() => sessionStorage.getItem('kkChatWidget:kff:session')") is None

    record = site["store"].recent(1)[0].as_dict()
    assert record["channel"] == "chat" and record["survey"] == 4 and record["outcome"] == "resolved"
    assert [t["heard"] for t in record["turns"]] == ["Jeg har mistet mit pas", "kort", "Dansk ID-kort",
                                                     "tak for hjælpen", "4"]
    assert [t["decision"] for t in record["turns"]][-2:] == ["survey", "survey"]
    assert record["turns"][0]["intent"] == "pas-mistet"


async def test_the_staff_button_is_a_transfer_in_the_record(site, page):
    """"Tal med en medarbejder" shows the contact panel and puts the request for a person into the
    conversation's record (once), so the monthly report counts the chat's transfers."""
    expect = playwright_api.expect
    await (await _open(page, site["host"] + "/")).click()
    await _ask(page, "Jeg har mistet mit pas")
    live = page.locator('[aria-live="polite"]')
    await expect(live).to_contain_text("politi")
    staff = page.get_by_role("button", name="Tal med en medarbejder")
    for _ in range(2):  # open, close, open: one turn
        await staff.click()
    await staff.click()
    await expect(page.get_by_role("region", name="Tal med en medarbejder")).to_contain_text("33 66 33 66")
    store = site["store"]
    for _ in range(50):
        turns = store.recent(1)[0].turns if store.recent(1) else []
        if len(turns) >= 2:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a second request would have arrived by now
    record = store.recent(1)[0]
    assert [t.heard for t in record.turns] == ["Jeg har mistet mit pas", "Tal med en medarbejder"]
    assert record.turns[1].decision == "transfer"
    await expect(live).not_to_contain_text("Du kan kontakte")  # the panel is the answer, not a bubble
    site["service"].close_all()
    assert store.recent(1)[0].outcome.startswith("transfer")


async def test_host_page_styles_are_untouched(site, page):
    read = f"""() => [...document.querySelectorAll('body, header, h1, #intro, #book, a')].map(e => {{
        const s = getComputedStyle(e); return {HOST_STYLES!r}.map(k => s.getPropertyValue(k)); }})"""
    await page.goto(site["host"] + "/plain")
    before = await page.evaluate(read)
    launcher = await _open(page, site["host"] + "/")
    assert await page.evaluate(read) == before
    # the page's styles do not reach into the widget either (Georgia, 19px, its red buttons)
    style = "b => [getComputedStyle(b).fontFamily, getComputedStyle(b).fontSize]"
    family, size = await launcher.evaluate(style)
    assert "Georgia" not in family and size == "16px"
    await launcher.click()
    await expect_visible(page.get_by_label("Skriv dit spørgsmål"))
    assert await page.evaluate(read) == before
    send = page.get_by_role("button", name="Send", exact=True)
    assert await send.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(11, 79, 138)"
    globals_after = await page.evaluate("() => Object.keys(window).filter(k => /kk|chat|widget/i.test(k))")
    assert globals_after == ["KkChatWidget"]


async def expect_visible(locator):
    await playwright_api.expect(locator).to_be_visible()


async def test_keyboard_only(site, page):
    expect = playwright_api.expect
    await _open(page, site["host"] + "/")
    for _ in range(10):  # through the host page's links and buttons to the launcher, last in the page
        await page.keyboard.press("Tab")
        if await page.evaluate(ACTIVE) == "Chat med Borgerservice":
            break
    else:
        pytest.fail("Tab never reached the chat launcher")
    await page.keyboard.press("Enter")
    assert await page.evaluate(ACTIVE) == "INPUT"  # focus moves into the panel, to the question box
    await page.keyboard.type("kort")
    await page.keyboard.press("Enter")
    live = page.locator('[aria-live="polite"]')
    await expect(live).to_contain_text("Mener du")
    await expect(page.get_by_role("button", name="Dansk ID-kort")).to_be_visible()
    assert await page.evaluate(ACTIVE) == "INPUT"
    for _ in range(6):  # back from the box to the options
        await page.keyboard.press("Shift+Tab")
        if await page.evaluate(ACTIVE) == "Dansk ID-kort":
            break
    else:
        pytest.fail("Shift+Tab never reached the clarification option")
    await page.keyboard.press("Enter")
    await expect(live).to_contain_text("ID-kort bestilles")

    for _ in range(6):  # "Tal med en medarbejder": phone number and today's hours
        await page.keyboard.press("Shift+Tab")
        if await page.evaluate(ACTIVE) == "Tal med en medarbejder":
            break
    else:
        pytest.fail("Shift+Tab never reached 'Tal med en medarbejder'")
    await page.keyboard.press("Enter")
    contact = page.get_by_role("region", name="Tal med en medarbejder")
    await expect(contact).to_contain_text("33 66 33 66")
    await expect(contact).to_contain_text(re.compile(r"(Åbent|Lukket) i dag"))
    await expect(contact.get_by_role("link", name="33 66 33 66")).to_have_attribute("href", "tel:+4533663366")

    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    assert await page.evaluate(ACTIVE) == "Chat med Borgerservice"  # focus back on the launcher


async def test_errors_are_told_in_danish(site, page):
    expect = playwright_api.expect
    launcher = await _open(page, site["host"] + "/")
    await page.route("**/api/chat", lambda route: route.fulfill(
        status=429, content_type="application/json", headers={"Retry-After": "1", "Access-Control-Allow-Origin": "*"},
        body='{"error": "too many requests", "message": "Du sender beskeder meget hurtigt. Vent et øjeblik."}'))
    await launcher.click()
    await _ask(page, "hej")
    live = page.locator('[aria-live="polite"]')
    await expect(live).to_contain_text("Du sender beskeder meget hurtigt")
    await page.unroute("**/api/chat")
    await page.route("**/api/chat", lambda route: route.fulfill(status=500, body="<html>proxy error</html>",
                                                                headers={"Access-Control-Allow-Origin": "*"}))
    await _ask(page, "hej igen")
    await expect(live).to_contain_text("Der skete en fejl hos os")
    await page.unroute("**/api/chat")
    await page.route("**/api/chat", lambda route: route.fulfill(
        status=200, content_type="application/json", headers={"Access-Control-Allow-Origin": "*"},
        body='{"session_id": "x", "new_session": true, "reply": {"text": "<img src=x onerror=alert(1)> '
             'se https://www.kk.dk.", "link": "javascript:alert(1)"}, "intent": "none", "confidence": 0, '
             '"ended": false}'))
    await _ask(page, "noget")
    await expect(live).to_contain_text("<img src=x onerror=alert(1)>")  # shown as text, never parsed
    hrefs = await live.get_by_role("link").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["https://www.kk.dk/"]  # the address in the text; the javascript: link is dropped
    assert await page.locator("kk-chat-widget img").count() == 0


async def test_axe_finds_no_serious_violations(site, page):
    expect = playwright_api.expect
    launcher = await _open(page, site["host"] + "/")
    await launcher.click()
    await _ask(page, "kort")
    await expect(page.get_by_role("button", name="Dansk ID-kort")).to_be_visible()
    await page.get_by_role("button", name="Tal med en medarbejder").click()
    await expect(page.get_by_role("region", name="Tal med en medarbejder")).to_contain_text("33 66 33 66")
    axe = axe_api.Axe()
    results = await axe.run(page)  # axe-core descends into open shadow roots by itself
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in results.response["violations"]
           if v["impact"] in ("serious", "critical")]
    assert not bad, bad
    # proof that axe looked inside the widget: a nameless button there must be caught
    await page.evaluate("() => document.querySelector('kk-chat-widget').shadowRoot.querySelector('.log')"
                        ".appendChild(document.createElement('button'))")
    results = await axe.run(page)
    ids = {v["id"] for v in results.response["violations"]}
    assert "button-name" in ids


async def test_demo_page_screenshots(site, page, tmp_path):
    """/widget-demo (the page `make run` users open), closed and open, each under 300 KB."""
    expect = playwright_api.expect
    out = PROJECT_ROOT / "docs" / "screenshots" if os.environ.get("WIDGET_SCREENSHOTS") else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size({"width": 1000, "height": 700})
    launcher = await _open(page, site["api"] + "/widget-demo")  # same origin: the tag is src="/widget.js"
    await page.screenshot(path=str(out / "widget-closed.png"))
    await launcher.click()
    await _ask(page, "Jeg har mistet mit pas")
    await expect(page.locator('[aria-live="polite"]')).to_contain_text("politi")
    await page.screenshot(path=str(out / "widget.png"))
    for name in ("widget-closed.png", "widget.png"):
        assert (out / name).stat().st_size < 300_000, name
