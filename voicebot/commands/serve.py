"""``voicebot serve``: the ARI application and the web server, in one asyncio process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys

from aiohttp import web

from voicebot.config import PROJECT_ROOT, Settings, load_settings, secret
from voicebot.telephony.app import VoicebotApp
from voicebot.telephony.ari import AriClient
from voicebot.telephony.rtp import CODECS

log = logging.getLogger("voicebot.serve")

PIDFILE = PROJECT_ROOT / "var" / "run" / "voicebot.pid"
PBX = PROJECT_ROOT / "asterisk" / "pbx"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the voicebot (ARI app) and the web chat server")
    p.add_argument("--with-pbx", action="store_true", help="also start the project's Asterisk, and stop it on exit")
    p.add_argument("--stop", action="store_true", help="stop a voicebot serve running in the background")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.stop:
        return stop_running()
    settings = load_settings(args.config)
    if args.with_pbx:
        subprocess.run([str(PBX), "start"], check=True)
    try:
        asyncio.run(serve(settings, banner=args.with_pbx))
    finally:
        if args.with_pbx:
            subprocess.run([str(PBX), "stop"], check=False)
    return 0


def stop_running() -> int:
    try:
        pid = int(PIDFILE.read_text())
        os.kill(pid, signal.SIGTERM)
        print(f"sent SIGTERM to voicebot serve (pid {pid})")
    except (OSError, ValueError):
        print("voicebot serve is not running")
    return 0


def build_voice(settings: Settings, vocabulary: list[str]):
    """Everything calls share: speech out, the ASR model (loaded once, biased towards the
    knowledge base's ``vocabulary`` where the engine is configured to use it), turn-taking."""
    from voicebot.speech.asr import create_listener, load_engine
    from voicebot.speech.tts import create_speech_out
    from voicebot.telephony.call import VoiceServices
    from voicebot.telephony.ear import VoiceConfig

    rate = CODECS[settings.media.format].rate
    speech = create_speech_out(settings, rate)
    speech.prepare()
    load_engine(settings, vocabulary)  # blocking: load the model now, not on the first call
    return VoiceServices(speech=speech, new_listener=lambda: create_listener(settings, rate, vocabulary),
                         config=settings.section("voice", VoiceConfig))


async def serve(settings: Settings, banner: bool = False) -> None:
    from voicebot.telephony.conversations import echo

    from voicebot.chat.api import add_chat_routes
    from voicebot.chat.service import build_chat_service

    from voicebot.knowledge.vocabulary import domain_words

    chat = await asyncio.to_thread(build_chat_service, settings)
    voice = await asyncio.to_thread(build_voice, settings, domain_words(chat.kb))
    await voice.speech.prompt("greeting")  # warm the cache: the first caller must not wait
    a = settings.asterisk
    ari = AriClient(a.ari_url, a.ari_user, a.ari_password, a.app, reconnect_max_seconds=a.reconnect_max_seconds)
    app = VoicebotApp(ari, settings.media, echo(), voice)

    web_app = web.Application()
    web_app.router.add_get("/healthz", lambda r: web.json_response(
        {"ari_connected": ari.connected.is_set(), "calls": len(app.calls)}))
    web_app.router.add_get("/", _to_chat)
    add_chat_routes(web_app, chat)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web.host, settings.web.port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP: reload the knowledge articles; a broken change is rejected and the old ones serve on
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(asyncio.to_thread(chat.reload)))
    PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    PIDFILE.write_text(str(os.getpid()))
    reader = asyncio.create_task(app.run(), name="ari-reader")
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
        await runner.cleanup()
        PIDFILE.unlink(missing_ok=True)


async def _to_chat(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/chat")


def print_banner(settings: Settings) -> None:
    sip_pw = secret("SIP_PASSWORD") or "(see asterisk/secrets.env)"
    w = settings.web
    print(f"""
  kk-voicebot is running.  Ctrl-C stops the bot and Asterisk.

  Main number           33663366   (short alias 1000; 2000 = human queue directly)
  Softphone account     sip:softphone@127.0.0.1:5060   user softphone   password {sip_pw}
  Human agent account   sip:agent1@127.0.0.1:5060      user agent1      password {sip_pw}
  Test call             .venv/bin/voicebot call 33663366 --say "Hej" --json
  Asterisk CLI          asterisk/pbx cli "core show channels"     (interactive: asterisk/pbx console)
  Kill switch           asterisk/pbx cli "database put voicebot enabled 0"   (1 = on again)
  Web                   http://{w.host}:{w.port}/
""", file=sys.stderr, flush=True)
