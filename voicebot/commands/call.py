"""``voicebot call NUMBER``: place a real SIP call into Asterisk, speak, listen, measure."""

from __future__ import annotations

import argparse
import asyncio
import json

from voicebot.config import secret
from voicebot.errors import VoicebotError
from voicebot.sip.caller import RATE, CallScript, place_call
from voicebot.speech.audio import read_wav, resample, write_wav


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("call", help="place a test SIP call (speaks, records, measures)")
    p.add_argument("number", help="number to dial, e.g. 33663366")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--say", metavar="TEXT", help="say this (espeak-ng Danish, 8 kHz)")
    what.add_argument("--play", metavar="WAV", help="send this recording (any rate, 16-bit)")
    p.add_argument("--at", type=float, metavar="SECONDS",
                   help="speak this many seconds after the answer (default: when the greeting ends)")
    p.add_argument("--dtmf", action="append", default=[], metavar="DIGIT@SECONDS",
                   help="press a key at a time after the answer, e.g. 1@2.5 (repeatable)")
    p.add_argument("--record", metavar="WAV", help="write what the caller heard (8 kHz)")
    p.add_argument("--timeout", type=float, default=60.0, help="hang up after this many seconds (default 60)")
    p.add_argument("--server", default="127.0.0.1:5060", help="SIP server host:port")
    p.add_argument("--user", default="softphone", help="SIP user (default softphone)")
    p.add_argument("--password", help="SIP password (default: $VOICEBOT_SIP_PASSWORD or asterisk/secrets.env)")
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
    password = args.password or secret("SIP_PASSWORD")
    if not password:
        raise VoicebotError("no SIP password: pass --password, set VOICEBOT_SIP_PASSWORD, "
                            "or run `asterisk/pbx install` (writes asterisk/secrets.env)")
    host, _, port = args.server.partition(":")
    script = CallScript(args.number, _audio(args), args.at, _dtmf(args.dtmf), max_seconds=args.timeout)
    report = asyncio.run(place_call(script, args.user, password, (host, int(port or 5060))))
    if args.record and report.recording is not None:
        write_wav(args.record, report.recording, RATE)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        d = report.as_dict()
        for key, value in d.items():
            print(f"{key:18} {value}")
    return 0 if report.answered else 1
