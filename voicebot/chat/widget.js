/* The Borgerservice chat widget for any municipal page:
 *
 *   <script src="https://HOST/widget.js" data-tenant="kff" defer></script>
 *
 * Optional: data-api="https://HOST" (default: the origin this script was loaded from).
 * Everything lives in one shadow root on one <kk-chat-widget> element: the page's CSS does not
 * reach in, ours does not leak out. The only global is window.KkChatWidget ({open, close}).
 * Server text is only ever set with textContent; links are built with DOM APIs (http/https only).
 * The session id the server issued is kept in sessionStorage, so the conversation survives a
 * page change within the same tab.
 */
(function () {
  "use strict";
  if (window.KkChatWidget) return; // the tag twice on a page: one widget

  var script = document.currentScript ||
    document.querySelector('script[src*="widget.js"][data-tenant]');
  var tenant = (script && script.getAttribute("data-tenant")) || "kff";
  var apiBase = (script && script.getAttribute("data-api")) ||
    (script && script.src ? new URL(script.src, location.href).origin : location.origin);
  apiBase = apiBase.replace(/\/+$/, "");
  var STORE_KEY = "kkChatWidget:" + tenant + ":session";
  var SURVEY = ["1", "2", "3", "4", "5"];
  var SURVEY_LABELS = {"1": "meget utilfreds", "2": "utilfreds", "3": "hverken eller",
    "4": "tilfreds", "5": "meget tilfreds"};
  var T = {
    launcher: "Chat med Borgerservice",
    title: "Borgerservice",
    subtitle: "Digital assistent",
    close: "Luk chatten",
    welcome: "Hej! Jeg er en digital assistent. Skriv dit spørgsmål, for eksempel \u201dJeg har mistet mit pas\u201d.",
    label: "Skriv dit spørgsmål",
    send: "Send",
    log: "Samtale med den digitale assistent",
    options: "Vælg et svar",
    staff: "Tal med en medarbejder",
    staffTitle: "Tal med en medarbejder",
    call: "Ring til Borgerservice på ",
    openNow: "Telefonen er åben nu.",
    closedNow: "Telefonen er lukket nu.",
    hours: "Telefontid: ",
    more: "Læs mere",
    newWindow: " (åbner i et nyt vindue)",
    you: "Du skrev: ",
    bot: "Assistenten svarer: ",
    waiting: "Assistenten skriver \u2026",
    restarted: "Samtalen er startet forfra, fordi den har været inaktiv.",
    tooFast: "Du sender beskeder meget hurtigt. Vent et øjeblik, og prøv igen.",
    failed: "Der skete en fejl hos os. Prøv igen om lidt.",
    offline: "Chatten kan ikke nås lige nu. Prøv igen om lidt, eller ring til Borgerservice på 33 66 33 66.",
    privacy: "Du skriver med en digital assistent, ikke med en medarbejder. Vi gemmer det, du skriver, " +
      "og svarene for at kunne forbedre hjælpen. CPR-numre fjernes, før noget gemmes. " +
      "Skriv ikke personlige oplysninger, som vi ikke har brug for."
  };

  var CSS = [
    ":host { all: initial !important; }",
    ".root { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; font-size: 16px;",
    "  line-height: 1.45; color: #1a1a1a; text-align: left; letter-spacing: normal; }",
    ".root *, .root *::before, .root *::after { box-sizing: border-box; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; }",
    "button, input { font: inherit; color: inherit; margin: 0; }",
    "button { cursor: pointer; border-radius: 6px; }",
    ":focus-visible { outline: 3px solid #0b4f8a; outline-offset: 2px; }",
    ".primary { background: #0b4f8a; color: #fff; border: 2px solid #0b4f8a; padding: 10px 18px; font-weight: 600; }",
    ".primary:hover { background: #083a66; border-color: #083a66; }",
    ".launcher .primary { border-radius: 24px; box-shadow: 0 2px 8px rgba(0,0,0,.3); }",
    ".secondary { background: #fff; color: #0b4f8a; border: 2px solid #0b4f8a; padding: 6px 12px; }",
    ".secondary:hover { background: #e6eef6; }",
    ".secondary:disabled, .primary:disabled { cursor: default; opacity: 1; background: #f0f0f0; color: #555;",
    "  border-color: #767676; }",
    ".panel { position: fixed; right: 20px; bottom: 20px; z-index: 2147483001; width: min(400px, calc(100vw - 40px));",
    "  height: min(620px, calc(100vh - 40px)); display: flex; flex-direction: column; background: #fff;",
    "  border: 1px solid #767676; border-radius: 10px; box-shadow: 0 4px 24px rgba(0,0,0,.35); overflow: hidden; }",
    ".panel[hidden], [hidden] { display: none !important; }",
    "header { display: flex; align-items: center; gap: 8px; background: #0b4f8a; color: #fff; padding: 10px 12px; }",
    "header .titles { flex: 1; }",
    "h2 { font-size: 18px; margin: 0; font-weight: 700; }",
    ".sub { font-size: 14px; margin: 0; }",
    ".close { background: transparent; color: #fff; border: 2px solid #fff; width: 36px; height: 36px;",
    "  font-size: 20px; line-height: 1; padding: 0; }",
    ".close:focus-visible { outline-color: #fff; }",
    ".privacy { font-size: 13px; margin: 0; padding: 8px 12px; background: #fdf6e3; color: #3d3100;",
    "  border-bottom: 1px solid #d8c98a; }",
    ".log { flex: 1; overflow-y: auto; padding: 12px; background: #fafafa; }",
    ".msg { margin: 0 0 10px; padding: 8px 12px; border-radius: 10px; max-width: 90%; white-space: pre-wrap;",
    "  overflow-wrap: anywhere; }",
    ".bot { background: #e6eef6; color: #1a1a1a; }",
    ".me { background: #0b4f8a; color: #fff; margin-left: auto; }",
    ".error { background: #fde8e8; color: #7a0b0b; border: 1px solid #b42318; }",
    ".note { font-size: 14px; color: #444; font-style: italic; }",
    ".msg a { color: #0b4f8a; text-decoration: underline; }",
    ".sr { position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;",
    "  clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
    ".choices { display: flex; flex-wrap: wrap; gap: 6px; margin: 0 0 10px; padding: 0; border: 0; }",
    ".choices legend { padding: 0; margin-bottom: 4px; font-size: 14px; }",
    ".survey .secondary { min-width: 44px; }",
    ".contact { padding: 10px 12px; border-top: 1px solid #ccc; background: #fff; font-size: 15px; }",
    ".contact h3 { font-size: 16px; margin: 0 0 4px; }",
    ".contact p { margin: 2px 0; }",
    ".contact a { color: #0b4f8a; font-weight: 600; }",
    ".bar { padding: 8px 12px 0; background: #fff; border-top: 1px solid #ccc; }",
    "form { display: flex; flex-wrap: wrap; gap: 8px; padding: 8px 12px 12px; background: #fff; }",
    "form label { flex-basis: 100%; font-size: 14px; font-weight: 600; }",
    "input { flex: 1; min-width: 0; padding: 9px 10px; border: 2px solid #767676; border-radius: 6px; background: #fff; }",
    ".waiting { font-size: 14px; color: #444; margin: 0 0 10px; }"
  ].join("\n");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
    }
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function safeUrl(text) {
    try {
      var url = new URL(text);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function appendLink(parent, href, label) {
    var a = el("a", {href: href, target: "_blank", rel: "noopener noreferrer"}, label);
    a.appendChild(el("span", {"class": "sr"}, T.newWindow));
    parent.appendChild(a);
  }

  // Text with its http(s) addresses as links; a trailing full stop or comma stays text.
  function appendText(parent, text) {
    var re = /https?:\/\/[^\s<>"]+/g, last = 0, m;
    while ((m = re.exec(text)) !== null) {
      var url = m[0].replace(/[.,;:!?)]+$/, "");
      parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      var href = safeUrl(url);
      if (href) appendLink(parent, href, url); else parent.appendChild(document.createTextNode(url));
      last = m.index + url.length;
      re.lastIndex = last;
    }
    parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function loadSession() {
    try { return sessionStorage.getItem(STORE_KEY); } catch (e) { return null; }
  }
  function saveSession(id) {
    try {
      if (id) sessionStorage.setItem(STORE_KEY, id); else sessionStorage.removeItem(STORE_KEY);
    } catch (e) { /* storage blocked: the session lasts as long as the page */ }
  }

  var host = document.createElement("kk-chat-widget");
  var shadow = host.attachShadow({mode: "open"}); // open: assistive tech and axe can reach it
  shadow.appendChild(el("style", null, CSS));
  var root = el("div", {"class": "root", lang: "da"});
  shadow.appendChild(root);

  var launcherWrap = el("div", {"class": "launcher"});
  var launcher = el("button", {type: "button", "class": "primary", "aria-expanded": "false",
    "aria-controls": "kk-chat-panel"}, T.launcher);
  launcherWrap.appendChild(launcher);

  var panel = el("section", {id: "kk-chat-panel", "class": "panel", role: "dialog",
    "aria-labelledby": "kk-chat-title", "aria-describedby": "kk-chat-privacy"});
  panel.hidden = true;
  var header = el("header");
  var titles = el("div", {"class": "titles"});
  titles.appendChild(el("h2", {id: "kk-chat-title"}, T.title + " \u2013 chat"));
  titles.appendChild(el("p", {"class": "sub"}, T.subtitle));
  var closeBtn = el("button", {type: "button", "class": "close", "aria-label": T.close, title: T.close}, "\u00d7");
  header.appendChild(titles);
  header.appendChild(closeBtn);
  var privacy = el("p", {id: "kk-chat-privacy", "class": "privacy"}, T.privacy);
  var log = el("div", {"class": "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
    "aria-label": T.log, tabindex: "0"});
  var waiting = el("p", {"class": "waiting", "aria-hidden": "true"}, T.waiting);
  waiting.hidden = true;
  log.appendChild(waiting); // stays last: messages go in before it
  var bar = el("div", {"class": "bar"});
  var staffBtn = el("button", {type: "button", "class": "secondary", "aria-expanded": "false",
    "aria-controls": "kk-chat-contact"}, T.staff);
  bar.appendChild(staffBtn);
  var contact = el("div", {id: "kk-chat-contact", "class": "contact", role: "region",
    "aria-labelledby": "kk-chat-contact-title"});
  contact.hidden = true;
  var form = el("form", {"class": "ask"});
  var input = el("input", {id: "kk-chat-input", type: "text", maxlength: "500", autocomplete: "off",
    enterkeyhint: "send"});
  var label = el("label", {"for": "kk-chat-input"}, T.label);
  var sendBtn = el("button", {type: "submit", "class": "primary"}, T.send);
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(sendBtn);
  panel.appendChild(header);
  panel.appendChild(privacy);
  panel.appendChild(log);
  panel.appendChild(bar);
  panel.appendChild(contact);
  panel.appendChild(form);
  root.appendChild(launcherWrap);
  root.appendChild(panel);

  var sessionId = loadSession(), busy = false, info = null, infoPromise = null, started = false;
  var staffNoted = false; // this session's record already has the "Tal med en medarbejder" turn

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function addMessage(who, text, link) {
    var p = el("p", {"class": "msg " + who});
    // who said it, for screen readers (the bubbles' colours say it to sighted users)
    p.appendChild(el("span", {"class": "sr"}, who === "me" ? T.you : T.bot));
    appendText(p, text);
    var href = link && safeUrl(link);
    if (href && text.indexOf(link) < 0) {
      p.appendChild(document.createTextNode(" "));
      appendLink(p, href, T.more + " på " + new URL(href).hostname.replace(/^www\./, ""));
    }
    log.insertBefore(p, waiting);
    scrollDown();
    return p;
  }

  function clearChoices() {
    var old = log.querySelectorAll(".choices");
    for (var i = 0; i < old.length; i++) old[i].remove();
  }

  function addChoices(options, kind) {
    var survey = kind === "survey" ||
      (!kind && options.length === SURVEY.length && options.every(function (o, i) { return o === SURVEY[i]; }));
    var group = el("fieldset", {"class": "choices" + (survey ? " survey" : "")});
    group.appendChild(el("legend", {"class": survey ? "sr" : null},
      survey ? "Vurdér hjælpen fra 1 (meget utilfreds) til 5 (meget tilfreds)" : T.options));
    options.forEach(function (option) {
      var b = el("button", {type: "button", "class": "secondary",
        "aria-label": survey ? option + " \u2013 " + SURVEY_LABELS[option] : null}, option);
      b.addEventListener("click", function () { send(option); });
      group.appendChild(b);
    });
    log.insertBefore(group, waiting);
    scrollDown();
  }

  function setBusy(on) {
    busy = on;
    sendBtn.disabled = on;
    waiting.hidden = !on;
    log.setAttribute("aria-busy", on ? "true" : "false");
    var buttons = log.querySelectorAll(".choices button");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on;
  }

  function post(message) {
    return fetch(apiBase + "/api/chat", {
      method: "POST", headers: {"Content-Type": "application/json"}, credentials: "omit",
      body: JSON.stringify({session_id: sessionId, message: message, tenant: tenant})
    }).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (data) {
        return {res: res, data: data};
      });
    }, function () { return {res: null, data: null}; });
  }

  function send(message) {
    message = (message || "").trim();
    if (!message || busy) return;
    setBusy(true);
    clearChoices();
    addMessage("me", message);
    post(message).then(function (r) {
      var data = r.data;
      if (!r.res || !r.res.ok || !data || !data.reply) {
        var text = (data && data.message) ||
          (!r.res ? T.offline : r.res.status === 429 ? T.tooFast : T.failed);
        addMessage("error", text);
        return;
      }
      if (data.new_session && sessionId) addMessage("note", T.restarted);
      sessionId = data.ended ? null : data.session_id; // a goodbye: the next message starts afresh
      if (data.ended || data.new_session) staffNoted = false;
      saveSession(sessionId);
      addMessage("bot", data.reply.text || "", data.reply.link);
      if (data.reply.options && data.reply.options.length) addChoices(data.reply.options, data.reply.ask);
    }).then(function () {
      setBusy(false);
      if (!panel.hidden) input.focus();
    });
  }

  function loadInfo() {
    if (!infoPromise) {
      infoPromise = fetch(apiBase + "/api/chat/info?tenant=" + encodeURIComponent(tenant), {credentials: "omit"})
        .then(function (res) { return res.ok ? res.json() : null; })
        .catch(function () { return null; })
        .then(function (data) {
          info = data;
          if (data && data.privacy) privacy.textContent = data.privacy;
          if (data && data.max_message_chars) input.setAttribute("maxlength", String(data.max_message_chars));
          if (!data) infoPromise = null; // try again next time
          return data;
        });
    }
    return infoPromise;
  }

  function renderContact(data) {
    contact.textContent = "";
    contact.appendChild(el("h3", {id: "kk-chat-contact-title"}, T.staffTitle));
    var phone = (data && data.phone) || "33 66 33 66";
    var p = el("p", null, T.call);
    var a = el("a", {href: (data && data.phone_uri) || "tel:+4533663366"}, phone);
    p.appendChild(a);
    contact.appendChild(p);
    if (data && data.hours_today) contact.appendChild(el("p", null, data.hours_today));
    if (data && data.open_now === true) contact.appendChild(el("p", null, T.openNow));
    if (data && data.open_now === false) {
      contact.appendChild(el("p", null, T.closedNow + (data.next_opening ? " " + data.next_opening : "")));
    }
    if (data && data.hours) contact.appendChild(el("p", null, T.hours + data.hours + "."));
    var href = data && data.link && safeUrl(data.link);
    if (href) {
      var more = el("p");
      appendLink(more, href, T.more + " om Borgerservice");
      contact.appendChild(more);
    }
  }

  function toggleContact() {
    var show = contact.hidden;
    staffBtn.setAttribute("aria-expanded", show ? "true" : "false");
    if (!show) { contact.hidden = true; return; }
    renderContact(info);
    contact.hidden = false;
    loadInfo().then(function (data) { if (data && !contact.hidden) renderContact(data); });
    noteStaffRequest();
  }

  // The conversation's record counts the request for a person (the KPIs' transfers), as if it
  // had been typed; the panel above is the answer, so the reply is not shown. Once a session.
  function noteStaffRequest() {
    if (staffNoted || busy) return;
    staffNoted = true;
    post(T.staff).then(function (r) {
      if (!r.res || !r.res.ok || !r.data || !r.data.session_id) { staffNoted = false; return; }
      sessionId = r.data.ended ? null : r.data.session_id;
      saveSession(sessionId);
    });
  }

  function open() {
    if (!panel.hidden) return;
    if (!started) {
      started = true;
      addMessage("bot", T.welcome);
    }
    loadInfo();
    panel.hidden = false;
    launcherWrap.hidden = true;
    launcher.setAttribute("aria-expanded", "true");
    input.focus();
  }

  function close() {
    if (panel.hidden) return;
    panel.hidden = true;
    launcherWrap.hidden = false;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", open);
  closeBtn.addEventListener("click", close);
  staffBtn.addEventListener("click", toggleContact);
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy) return;
    var text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send(text);
  });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { e.preventDefault(); close(); }
  });

  function mount() { (document.body || document.documentElement).appendChild(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  window.KkChatWidget = Object.freeze({open: open, close: close, tenant: tenant, api: apiBase});
})();
