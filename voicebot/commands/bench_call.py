"""``voicebot bench call``: latency of the running system as a caller feels it.

Places real SIP calls to the running system (``make run``) and measures, at the caller:
  * answer → first greeting audio,
  * turn latency: end of the caller's speech → start of the bot's reply (an article answer when
    the bot runs the test recognizer, which hears SENTENCE; Whisper usually asks to rephrase
    espeak-ng's Danish, DESIGN.md §9),
  * barge-in: the caller's voice onset during the greeting → the greeting stops.
``--parallel N`` places N calls at once (load), each doing both measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import numpy as np

from voicebot.config import load_settings, sip_password
from voicebot.errors import VoicebotError
from voicebot.eventloop import run_loop
from voicebot.sip.caller import RATE, CallScript, place_call
from voicebot.sip.measure import prompt_stop_ms, voice_onset_ms
from voicebot.sip.script import ASR_SCRIPT_HEADER, encode_asr_script

SENTENCE = "Hej, jeg har mistet mit pas, og jeg skal ud at rejse på mandag."
BARGE_AT = 2.0  # seconds into the greeting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("call", help="caller-side latency of the running system (first audio, turn, barge-in)")
    p.add_argument("--number", default="33663366")
    p.add_argument("--calls", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--parallel", type=int, default=1, help="simultaneous calls per round (default 1)")
    p.add_argument("--server", default="127.0.0.1:5060")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.calls < 1 or args.parallel < 1:
        raise VoicebotError("--calls and --parallel must be at least 1")
    password = sip_password("softphone")
    if not password:
        raise VoicebotError("no SIP password for softphone: run `asterisk/pbx install` or set "
                            "VOICEBOT_SIP_PASSWORD_SOFTPHONE")
    host, _, port = args.server.partition(":")
    result = run_loop(_bench(args, password, (host, int(port or 5060))))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0 if result["failed_calls"] == 0 else 1


async def _bench(args: argparse.Namespace, password: str, server: tuple[str, int]) -> dict:
    from voicebot.speech.audio import resample
    from voicebot.speech.tts import create_speech_out
    from voicebot.speech.tts.espeak import EspeakTTS

    from voicebot.dialogue.runtime import greeting_text

    settings = load_settings(args.config)
    # the greeting's first sentences are the same open or closed: barge-in is measured in them
    greeting = await create_speech_out(settings, RATE).audio_for(greeting_text(settings))
    said = EspeakTTS().synthesize(SENTENCE)
    speech = resample(said.samples, said.rate, RATE)
    onset = voice_onset_ms(speech, RATE)
    speech_end = len(speech) / RATE * 1000 - _trailing_silence_ms(speech)
    first, turn, barge, failed, no_reply = [], [], [], 0, 0
    for _ in range(args.calls):
        rounds = await asyncio.gather(*(_one(args.number, password, server, speech, greeting, onset, speech_end)
                                        for _ in range(args.parallel)), return_exceptions=True)
        for r in rounds:
            if isinstance(r, BaseException) or r is None:
                failed += 1
                continue
            f, t, b = r
            first.append(f)
            if t is not None:
                turn.append(t)
            else:
                no_reply += 1
            if b is not None:
                barge.append(b)
    return {"calls": args.calls * args.parallel, "parallel": args.parallel, "failed_calls": failed,
            "no_reply_in_5s": no_reply, "first_audio_ms": _stats(first), "turn_latency_ms": _stats(turn),
            "barge_in_ms": _stats(barge)}


async def _one(number, password, server, speech, greeting, onset, speech_end):
    # 1. speak after the greeting; the reply's start gives the turn latency
    # a bot on the declared test recognizer "hears" SENTENCE (an article answer); Whisper ignores it
    headers = [(ASR_SCRIPT_HEADER, encode_asr_script([SENTENCE]))]
    turn_call = await place_call(CallScript(number, audio=speech, quiet_hangup_s=5.0, max_seconds=40,
                                            headers=headers), "softphone", password, server)
    if not turn_call.answered or turn_call.caller_speech_ms is None:
        return None
    end = turn_call.caller_speech_ms[0] + speech_end
    reply = next((a for a, _ in turn_call.bot_segments_ms if a > end), None)
    # 2. speak during the greeting; when it stops gives the barge-in latency
    barge_call = await place_call(CallScript(number, audio=speech, speak_at=BARGE_AT, quiet_hangup_s=0.5,
                                             max_seconds=20), "softphone", password, server)
    stop = prompt_stop_ms(barge_call, greeting) if barge_call.answered else None
    barge = stop - (barge_call.caller_speech_ms[0] + onset) if stop and barge_call.caller_speech_ms else None
    return turn_call.first_audio_ms, (reply - end if reply else None), barge


def _trailing_silence_ms(samples: np.ndarray) -> float:
    return voice_onset_ms(samples[::-1].copy(), RATE)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    p95 = v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]
    return {"n": len(v), "p50": round(statistics.median(v), 1), "p95": round(p95, 1), "max": round(v[-1], 1)}
