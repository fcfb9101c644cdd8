"""The embeddable widget's server side: /widget.js, /widget-demo, /api/chat/info and CORS.

The widget itself is driven in a real browser by tests/integration/test_widget_browser.py.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from voicebot.chat.api import WIDGET_JS, chat_info

UTC = dt.timezone.utc


async def test_widget_js_is_served_with_caching_headers(client):
    resp = await client.get("/widget.js")
    assert resp.status == 200
    assert resp.content_type == "application/javascript"
    assert "max-age=" in resp.headers["Cache-Control"] and resp.headers["ETag"]
    assert "data-tenant" in await resp.text()
    again = await client.get("/widget.js", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


def test_widget_js_never_parses_server_text_as_html():
    source = WIDGET_JS.read_text(encoding="utf-8")
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert risky not in source, risky


async def test_demo_page_carries_the_tag(client):
    resp = await client.get("/widget-demo")
    assert resp.status == 200
    assert re.search(r'<script src="/widget.js" data-tenant="kff" defer></script>', await resp.text())
    assert (await client.get("/chat")).status == 200  # the full-page chat stays


async def test_info_gives_phone_hours_and_privacy(client):
    resp = await client.get("/api/chat/info", params={"tenant": "kff"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    body = await resp.json()
    assert body["phone"] == "33 66 33 66" and body["phone_uri"] == "tel:+4533663366"
    assert re.match(r"(Åbent i dag \(\w+\) kl\. |Lukket i dag)", body["hours_today"])
    assert isinstance(body["open_now"], bool)
    assert "digital assistent" in body["privacy"] and "90 dage" in body["privacy"]
    assert body["max_message_chars"] == 500
    assert (await client.get("/api/chat/info", params={"tenant": "nope"})).status == 404


@pytest.mark.parametrize("when, open_now, today, next_opening", [
    (dt.datetime(2025, 6, 2, 9, 30, tzinfo=UTC), True, "Åbent i dag (mandag) kl. 11.00-17.00.", ""),
    (dt.datetime(2025, 6, 4, 5, 0, tzinfo=UTC), False, "Åbent i dag (onsdag) kl. 8.00-14.00.",
     "Vi åbner igen i dag klokken 8."),
    (dt.datetime(2025, 6, 14, 10, 0, tzinfo=UTC), False, "Lukket i dag (lørdag).",
     "Vi åbner igen på mandag klokken 11."),
    # the Saturday before Anden pinsedag (Monday 9 June 2025, a public holiday)
    (dt.datetime(2025, 6, 7, 10, 0, tzinfo=UTC), False, "Lukket i dag (lørdag).",
     "Vi åbner igen på tirsdag klokken 8."),
    (dt.datetime(2025, 6, 9, 10, 0, tzinfo=UTC), False, "Lukket i dag (mandag, anden pinsedag).",
     "Vi åbner igen i morgen klokken 8."),
])
def test_info_hours_today(service, when, open_now, today, next_opening):
    info = chat_info(service.settings, when)
    assert (info["open_now"], info["hours_today"], info["next_opening"]) == (open_now, today, next_opening)
    assert info["hours"] == "mandag 11 til 17 og tirsdag til fredag 8 til 14"


async def test_cross_origin_requests_are_allowed(client):
    pre = await client.options("/api/chat", headers={"Origin": "https://www.kk.dk",
                                                     "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "content-type"})
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in pre.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in pre.headers["Access-Control-Allow-Headers"]
    resp = await client.post("/api/chat", json={"message": "Jeg har mistet mit pas"},
                             headers={"Origin": "https://www.kk.dk"})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
    bad = await client.post("/api/chat", data=b"{", headers={"Origin": "https://www.kk.dk"})
    assert bad.status == 400 and bad.headers["Access-Control-Allow-Origin"] == "*"  # the widget reads errors too
