"""``voicebot serve``: the ARI application and the web server, in one asyncio process."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from voicebot.config import PROJECT_ROOT, Settings, load_settings
from voicebot.eventloop import loop_name, run_loop
from voicebot.telephony.app import VoicebotApp
from voicebot.telephony.ari import AriClient
from voicebot.telephony.rtp import CODECS

log = logging.getLogger("voicebot.serve")

PIDFILE = PROJECT_ROOT / "var" / "run" / "voicebot.pid"  # the default instance's (asterisk.app: voicebot)
PBX = PROJECT_ROOT / "asterisk" / "pbx"
IO_WORKERS = 8  # the default executor: store writes, records, TTS cache reads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the voicebot (ARI app) and the web chat server")
    p.add_argument("--with-pbx", action="store_true", help="also start the project's Asterisk, and stop it on exit")
    p.add_argument("--stop", action="store_true", help="stop a voicebot serve running in the background")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.stop:
        return stop_running(settings.asterisk.app)
    if args.with_pbx:
        subprocess.run([str(PBX), "start"], check=True)
    try:
        run_loop(serve(settings, banner=args.with_pbx))
    finally:
        if args.with_pbx:
            subprocess.run([str(PBX), "stop"], check=False)
    return 0


def pidfile(app: str) -> Path:
    """One pid file per instance (ARI app name), so two instances on one machine stay apart."""
    return PIDFILE if app == "voicebot" else PIDFILE.with_name(f"{app}.pid")


def stop_running(app: str = "voicebot") -> int:
    try:
        pid = int(pidfile(app).read_text())
        os.kill(pid, signal.SIGTERM)
        print(f"sent SIGTERM to voicebot serve (pid {pid})")
    except (OSError, ValueError):
        print("voicebot serve is not running")
    return 0


def build_voice(settings: Settings, vocabulary: list[str]):
    """Everything calls share: speech out, the ASR model (loaded once, biased towards the
    knowledge base's ``vocabulary`` where the engine is configured to use it), turn-taking."""
    from voicebot.dialogue.texts import DialogueTexts
    from voicebot.speech.asr import AsrConfig, create_listener, load_engine
    from voicebot.speech.tts import create_speech_out
    from voicebot.speech.vad import VadConfig
    from voicebot.telephony.call import VoiceServices
    from voicebot.telephony.ear import DecodeGate, VoiceConfig

    rate = CODECS[settings.media.format].rate
    speech = create_speech_out(settings, rate)
    speech.prepare()
    engine = load_engine(settings, vocabulary)  # blocking: load the model now, not on the first call
    test_recognizer = settings.section("speech.asr", AsrConfig).engine == "script"
    if test_recognizer:
        log.warning("THE TEST RECOGNIZER IS ON (speech.asr.engine: script): callers' speech is NOT "
                    "recognized; this configuration is for call-flow tests only")

    def new_listener(script=None):
        listener = create_listener(settings, rate, vocabulary)
        if test_recognizer:  # each call gets its own list of texts (its caller's header)
            listener.recognizer.engine = engine.for_call(script)
        return listener

    config = settings.section("voice", VoiceConfig)
    texts = settings.section("dialogue", DialogueTexts)
    return VoiceServices(speech=speech, new_listener=new_listener, config=config,
                         apology=texts.technical_error, holding=texts.holding, gate=DecodeGate(config.max_pending_decodes),
                         end_silence_ms=settings.section("speech.vad", VadConfig).end_silence_ms,
                         test_recognizer=test_recognizer)


async def serve(settings: Settings, banner: bool = False) -> None:
    from voicebot.chat.api import add_chat_routes
    from voicebot.chat.service import ChatConfig, ChatService
    from voicebot.dialogue.runtime import build_runtime
    from voicebot.knowledge.vocabulary import domain_words
    from voicebot.privacy import record_salt
    from voicebot.settings_check import validate_all
    from voicebot.sms import dispatcher_for_settings
    from voicebot.speech.asr import AsrConfig
    from voicebot.speech.tts.prebuild import prebuild_for_calls
    from voicebot.store import open_store
    from voicebot.telephony.ami import AmiClient
    from voicebot.telephony.clock_client import media_clock
    from voicebot.telephony.conversations import VoiceDialogue

    validate_all(settings)  # every section, now: a typo must not surface inside a call
    # blocking store/record/TTS-cache work runs here (asyncio.to_thread): a fixed, named pool,
    # so /healthz can tell a pool reaching its size from a thread leak
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(IO_WORKERS, thread_name_prefix="io"))
    runtime = await asyncio.to_thread(build_runtime, settings)
    store = await asyncio.to_thread(open_store, settings)
    chat = ChatService(settings, runtime, store)
    voice = await asyncio.to_thread(build_voice, settings, domain_words(runtime.kb))
    # every fixed line and answer in the call-rate cache: the first caller must not wait
    await asyncio.to_thread(prebuild_for_calls, settings, runtime.engine, voice.speech.cache)
    a = settings.asterisk
    ari = AriClient(a.ari_url, a.ari_user, a.ari_password, a.app, reconnect_max_seconds=a.reconnect_max_seconds)
    ami = AmiClient(a)
    await ami.start()
    sms = dispatcher_for_settings(settings, store)
    dialogue = VoiceDialogue(runtime, store=store, ami=ami, salt=record_salt(), on_sms_queued=sms.wake,
                             config=voice.config)
    app = VoicebotApp(ari, settings.media, dialogue, voice)
    await media_clock().start()

    web_app = web.Application()
    pool_sizes = {"io": IO_WORKERS, "asr": settings.section("speech.asr", AsrConfig).worker_count,
                  "chat": settings.section("chat", ChatConfig).workers}
    instance = instance_info(settings, store)
    web_app.router.add_get("/healthz", lambda r: web.json_response(_health(ari, app, voice, pool_sizes, instance)))
    web_app.router.add_get("/readyz", lambda r: _ready(ari))
    web_app.router.add_get("/", _to_chat)
    add_chat_routes(web_app, chat)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web.host, settings.web.port).start()
    admin = await _start_admin(settings, app, voice, runtime)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()

    def reload() -> None:
        # SIGHUP: reload the knowledge for phone and chat at once; new answers are synthesized
        # before the switch; a broken change is rejected and the old knowledge serves on
        task = asyncio.ensure_future(asyncio.to_thread(
            runtime.reload, lambda engine: prebuild_for_calls(settings, engine, voice.speech.cache)))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    pid_path = pidfile(a.app)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.write_text(str(os.getpid()))
    reader = asyncio.create_task(app.run(), name="ari-reader")
    sender = asyncio.create_task(sms.run(), name="sms-dispatcher")
    purger = asyncio.create_task(_purge_daily(store, settings), name="retention")
    log.info("voicebot serving", extra={"app": a.app, "web": f"http://{settings.web.host}:{settings.web.port}/"})
    if banner:
        try:
            await asyncio.wait_for(ari.connected.wait(), 5)
        except asyncio.TimeoutError:
            pass
        print_banner(settings)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await app.shutdown()
        await ari.close()  # first: the reader then ends quietly instead of reporting a lost link
        reader.cancel()
        sender.cancel()
        purger.cancel()
        await sms.gateway.close()
        await ami.close()
        await media_clock().close()
        await runner.cleanup()  # the chat takes no more messages, and its worker threads stop
        if admin is not None:
            await admin.cleanup()
        await asyncio.to_thread(chat.close_all)
        pid_path.unlink(missing_ok=True)


async def _purge_daily(store, settings: Settings) -> None:
    """Retention: records older than ``store.retention_days`` are deleted at start and daily."""
    from voicebot.store import store_config

    days = store_config(settings).retention_days
    while True:
        try:
            deleted = await asyncio.to_thread(store.purge, days)
            log.info("retention purge", extra={"deleted": deleted, "older_than_days": days})
        except Exception:  # task boundary: retention must survive a store hiccup
            log.exception("retention purge failed")
        await asyncio.sleep(24 * 3600)


def instance_info(settings: Settings, store) -> dict:
    """Which instance this is, on which node, and which store it shares (no secrets): for ops
    looking at several bots and nodes (``/healthz``, ``voicebot doctor``)."""
    import socket

    from voicebot.store import store_config

    cfg = store_config(settings)
    describe = getattr(store, "describe", None)
    return {"app": settings.asterisk.app, "node": socket.gethostname(), "pid": os.getpid(),
            "ari": settings.asterisk.ari_url, "event_loop": loop_name(),
            "store": describe() if callable(describe) else {"backend": cfg.backend}}


def _ready(ari: AriClient) -> web.Response:
    """For a load balancer or the platform's monitoring: 200 only when calls can be taken. The
    models and the knowledge are loaded before this listener starts, so ARI is the open question."""
    ready = ari.connected.is_set()
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def _health(ari: AriClient, app: VoicebotApp, voice, pool_sizes: dict[str, int], instance: dict | None = None) -> dict:
    """For ops and load balancers; ``tasks``/``fds``/``threads`` let tests see leaks. The thread
    pools grow on demand up to their size, so a leak shows in ``threads_outside_pools``, and
    ``threads`` never passes that plus ``pool_threads_max``."""
    import threading

    from voicebot.speech.asr.recognizer import SPECULATIONS
    from voicebot.telephony.clock_client import media_clock

    prefixes = tuple(f"{name}_" for name in pool_sizes)
    outside = sum(not t.name.startswith(prefixes) for t in threading.enumerate())
    return {"ready": ari.connected.is_set(), "instance": instance or {},
            "ari_connected": ari.connected.is_set(), "calls": len(app.calls),
            "max_calls": voice.config.max_calls, "pending_decodes": voice.gate.pending if voice.gate else 0,
            "test_recognizer": voice.test_recognizer, "tasks": len(asyncio.all_tasks()),
            "fds": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None,
            "threads": threading.active_count(), "threads_outside_pools": outside,
            "pool_threads_max": sum(pool_sizes.values()),
            "media_clock": media_clock().running, "media_late_ms_max": media_clock().late_ms_max(),
            "speculations": SPECULATIONS.as_dict()}


async def _start_admin(settings: Settings, app: VoicebotApp, voice, runtime) -> web.AppRunner | None:
    """The ops listener (``web.admin_host``/``admin_port``, loopback by default): ``/metrics`` and
    the staff pages (``/staff``, voicebot/staff/).
    Separate from the public chat port, so a reverse proxy in front of the chat never exposes it."""
    from voicebot import metrics
    from voicebot.speech.asr.recognizer import SPECULATIONS
    from voicebot.staff import add_staff_routes

    w = settings.web
    if not w.admin_port:
        return None
    metrics.LIVE.calls = lambda: len(app.calls)
    metrics.LIVE.pending_decodes = lambda: voice.gate.pending if voice.gate else 0
    metrics.LIVE.speculations = SPECULATIONS.as_dict
    admin = web.Application()
    admin.router.add_get("/metrics", lambda r: web.Response(body=metrics.exposition(),
                                                            content_type="text/plain", charset="utf-8"))
    add_staff_routes(admin, settings=settings, runtime=runtime)
    runner = web.AppRunner(admin, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, w.admin_host, w.admin_port).start()
    return runner


async def _to_chat(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/chat")


def print_banner(settings: Settings) -> None:
    """What `make run` shows. Never a secret: a terminal is scrolled back, shared and pasted into
    tickets. The SIP passwords (one per account) are in asterisk/secrets.env; `make secrets`
    prints them when asked."""
    w = settings.web
    print(f"""
  kk-voicebot is running.  Ctrl-C stops the bot and Asterisk.

  Main number           33663366   (short alias 1000; 2000 = human queue directly)
  A tenant's own number 33663300   (Børne- og Ungdomsforvaltningen, knowledge/buf/)
  Softphone account     sip:softphone@127.0.0.1:5060   user softphone
  Human agent account   sip:agent1@127.0.0.1:5060      user agent1
  SIP passwords         one per account, in asterisk/secrets.env (`make secrets` shows them)
  Test call             .venv/bin/voicebot call 33663366 --say "Hej" --json
  Asterisk CLI          asterisk/pbx cli "core show channels"     (interactive: asterisk/pbx console)
  Kill switch           asterisk/pbx cli "database put voicebot enabled 0"   (1 = on again)
  Web chat              http://{w.host}:{w.port}/     widget on a host page: http://{w.host}:{w.port}/widget-demo
  Staff pages           {f"http://{w.admin_host}:{w.admin_port}/staff/" if w.admin_port else "off (web.admin_port: 0)"}   first user: .venv/bin/voicebot staff add NAME --tenant kff
  Metrics (ops only)    {f"http://{w.admin_host}:{w.admin_port}/metrics" if w.admin_port else "off (web.admin_port: 0)"}
""", file=sys.stderr, flush=True)
