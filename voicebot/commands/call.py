"""``voicebot call NUMBER``: place a real SIP call into Asterisk, speak, listen, measure.

With ``--script FILE.yaml`` the caller runs steps in order (see ``voicebot.sip.script``), tags the
call with an ``X-Voicebot-Ref`` id, and afterwards reads the bot's record of that call (outcome,
turns, SMS, survey) from the bot's store when this machine can reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from voicebot.config import Settings, load_settings, sip_password, sip_secret_name
from voicebot.errors import VoicebotError
from voicebot.sip.caller import RATE, CallReport, CallScript, place_call
from voicebot.speech.audio import read_wav, resample, write_wav

log = logging.getLogger("voicebot.call")

RECORD_FIELDS = ("outcome", "turns", "sms", "survey")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("call", help="place a test SIP call (speaks, records, measures)")
    p.add_argument("number", help="number to dial, e.g. 33663366")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--say", metavar="TEXT", help="say this (espeak-ng Danish, 8 kHz)")
    what.add_argument("--play", metavar="WAV", help="send this recording (any rate, 16-bit)")
    what.add_argument("--script", metavar="YAML", help="run these steps in order (say, play, dtmf, "
                      "wait_bot, wait, hangup) and report the bot's record of the call; exit 0 only "
                      "when every step completed")
    p.add_argument("--at", type=float, metavar="SECONDS",
                   help="speak this many seconds after the answer (default: when the greeting ends)")
    p.add_argument("--dtmf", action="append", default=[], metavar="DIGIT@SECONDS",
                   help="press a key at a time after the answer, e.g. 1@2.5 (repeatable)")
    p.add_argument("--record", metavar="WAV", help="write what the caller heard (8 kHz)")
    p.add_argument("--timeout", type=float, default=60.0, help="hang up after this many seconds (default 60)")
    p.add_argument("--server", default="127.0.0.1:5060", help="SIP server host:port")
    p.add_argument("--user", default="softphone", help="SIP user (default softphone)")
    p.add_argument("--caller-id", metavar="NUMBER", help="with --script: the caller's number (P-Asserted-Identity), "
                   "e.g. +4520123456 to call from a mobile that can receive an SMS")
    p.add_argument("--password", help="SIP password (default: the --user account's own, "
                   "$VOICEBOT_SIP_PASSWORD_<USER> or SIP_PASSWORD_<USER> in asterisk/secrets.env)")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=run)


def _audio(args: argparse.Namespace):
    if args.say:
        from voicebot.speech.tts.espeak import EspeakTTS

        out = EspeakTTS().synthesize(args.say)
        return resample(out.samples, out.rate, RATE)
    if args.play:
        samples, rate = read_wav(args.play)
        return resample(samples, rate, RATE)
    return None


def _dtmf(specs: list[str]) -> list[tuple[str, float]]:
    out = []
    for spec in specs:
        digit, sep, at = spec.partition("@")
        if len(digit) != 1 or digit.upper() not in "0123456789*#ABCD" or not sep:
            raise VoicebotError(f"--dtmf {spec!r}: expected DIGIT@SECONDS, e.g. 1@2.5")
        out.append((digit, float(at)))
    return out


def run(args: argparse.Namespace) -> int:
    password = args.password or sip_password(args.user)
    if not password:
        raise VoicebotError(f"no SIP password for {args.user!r}: pass --password, set VOICEBOT_{sip_secret_name(args.user)}, "
                            "or run `asterisk/pbx install` (writes asterisk/secrets.env)")
    host, _, port = args.server.partition(":")
    server = (host, int(port or 5060))
    if args.script:
        return _run_script(args, password, server)
    script = CallScript(args.number, _audio(args), args.at, _dtmf(args.dtmf), max_seconds=args.timeout)
    report = asyncio.run(place_call(script, args.user, password, server))
    _print(args, report, report.as_dict())
    return 0 if report.answered else 1


def _run_script(args: argparse.Namespace, password: str, server: tuple[str, int]) -> int:
    from voicebot.sip.script import call_headers, espeak_tts, load_script, new_ref, render, run_script

    if args.at is not None or args.dtmf:
        raise VoicebotError("--at and --dtmf do not combine with --script: put the steps in the script")
    settings = load_settings(args.config)  # before dialling: a bad --config fails fast
    steps = load_script(args.script)
    ref = new_ref()
    call_headers(steps, ref, args.script)  # too long for an INVITE: fail before synthesizing
    audio = render(steps, espeak_tts)
    report = asyncio.run(run_script(steps, audio, args.number, args.user, password, ref=ref, server=server,
                                    timeout=args.timeout, source=args.script, caller_id=args.caller_id))
    record = fetch_record(settings, ref) if report.answered else None
    _print(args, report, scripted_result(report, ref, record))
    return 0 if report.answered and all(s["completed"] for s in report.steps) \
        and len(report.steps) == len(steps) else 1


def scripted_result(report: CallReport, ref: str, record: dict | None) -> dict[str, Any]:
    """The call's measurements plus what the bot recorded (null fields when no record)."""
    out: dict[str, Any] = {"answered": report.answered, "ref": ref, **report.as_dict()}
    for key in RECORD_FIELDS:
        out[key] = record.get(key) if record else None
    out["record_found"] = record is not None
    return out


def fetch_record(settings: Settings, ref: str, timeout: float = 5.0) -> dict | None:
    """The bot's record of the call tagged ``ref`` (as a dict, with its ``sms``), waiting up to
    ``timeout`` for the bot to finish writing it (``ended_at``) after the call ended.

    None, after a warning, when there is no such record here (the bot may run on another machine
    or use another store path).
    """
    from voicebot.store import open_store, store_config

    store = None
    try:
        cfg = store_config(settings)
        if cfg.backend == "sqlite" and not settings.path(cfg.path).exists():  # opening would create it
            log.warning("no record store on this machine (the bot runs elsewhere or uses another "
                        "store.path): outcome/turns/sms/survey left empty", extra={"path": cfg.path})
            return None
        store = open_store(settings)
        deadline = time.monotonic() + timeout
        while True:
            found = store.by_ref(ref)  # newest first
            record = found[0] if found else None
            if (record is not None and record.ended_at) or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if record is None:
            log.warning("no record of this call in the bot's store (another machine or store path?)",
                        extra={"ref": ref})
            return None
        if not record.ended_at:
            log.warning("the bot has not finished its record of this call: fields may be incomplete",
                        extra={"ref": ref})
        data = record.as_dict()
        data["sms"] = [m.as_dict() for m in store.sms_for(record.id)]
        return data
    except VoicebotError as exc:  # a store problem must not lose the call report
        log.warning("reading the bot's record failed", extra={"ref": ref, "error": str(exc)})
        return None
    finally:
        if store is not None:
            store.close()


def _print(args: argparse.Namespace, report: CallReport, result: dict[str, Any]) -> None:
    if args.record and report.recording is not None:
        write_wav(args.record, report.recording, RATE)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    for key, value in result.items():
        if key == "steps" and value:
            print("steps")
            for s in value:
                end = s["end_ms"] if s["end_ms"] is not None else "-"
                flag = "" if s["completed"] else "  (not completed)"
                print(f"  {s['start_ms']:>7} {end:>7} ms  {s['step']}: {s['value']}{flag}")
        elif key == "turns" and value:
            print("turns")
            for t in value:
                print(f"  heard={t.get('heard')!r} intent={t.get('intent')} decision={t.get('decision')} "
                      f"said={t.get('said')!r}")
        else:
            print(f"{key:18} {value}")
