"""``voicebot bench asr [--engine E] [--json]`` and ``voicebot bench vad [--json]``.

ASR: real-time factor and per-utterance latency (p50/p95) of each installed engine on Danish
utterances synthesized with espeak-ng at bench time and squeezed through an 8 kHz μ-law line.
Latency is the wait after the end of the utterance: the whole decode for a segment engine, the
final flush for a streaming engine (which decoded while the audio arrived). VAD: frames/second.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

from voicebot.errors import ModelError

SENTENCES = [
    "Jeg har mistet mit pas, og jeg skal rejse på fredag.",
    "Hvornår har Borgerservice åbent i dag?",
    "Jeg vil gerne bestille en tid til nyt kørekort.",
    "Mit sundhedskort er blevet væk.",
    "Jeg er flyttet og skal melde ny adresse.",
    "Kan jeg få hjælp til at søge om boligstøtte?",
    "Hvad koster det at forny et pas?",
    "Jeg vil gerne tale med en medarbejder.",
]


def register(subparsers) -> None:
    a = subparsers.add_parser("asr", help="ASR real-time factor and latency on telephone-band Danish")
    a.add_argument("--engine", help="only this engine (default: every installed engine)")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_asr)
    v = subparsers.add_parser("vad", help="VAD endpointer frames per second")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=run_vad)


def telephone_utterances() -> list[tuple[np.ndarray, int]]:
    from voicebot.speech.telephone import phone_line
    from voicebot.speech.tts.espeak import EspeakTTS

    tts = EspeakTTS()
    out = []
    for text in SENTENCES:
        s = tts.synthesize(text)
        out.append(phone_line(s.samples, s.rate))
    return out


def bench_engine(engine, utterances, progress: bool) -> dict:
    engine.transcribe(*utterances[0])  # warm-up
    latencies, decode, audio = [], 0.0, 0.0
    for samples, rate in tqdm(utterances, desc=f"bench {engine.name}", disable=not progress):
        t0 = time.perf_counter()
        stream = engine.open_stream(rate)
        for i in range(0, len(samples), rate // 50):  # 20 ms frames, as the call handler pushes
            stream.accept(samples[i:i + rate // 50])
        t1 = time.perf_counter()
        stream.finish()
        t2 = time.perf_counter()
        latencies.append(t2 - t1)
        decode += t2 - t0
        audio += len(samples) / rate
    ms = np.array(latencies) * 1000
    return {"engine": engine.name, "utterances": len(utterances), "audio_seconds": round(audio, 2),
            "rtf": round(decode / audio, 4), "latency_ms_p50": round(float(np.percentile(ms, 50)), 1),
            "latency_ms_p95": round(float(np.percentile(ms, 95)), 1)}


def run_asr(args: argparse.Namespace) -> int:
    from voicebot.config import load_settings
    from voicebot.speech.asr import ENGINES, load_engine

    settings = load_settings(args.config)
    names = [args.engine] if args.engine else list(ENGINES)
    utterances = telephone_utterances()
    results, skipped = [], {}
    for name in names:
        try:
            engine = load_engine(settings, engine=name)
        except ModelError as exc:
            if args.engine:
                raise
            skipped[name] = str(exc)
            continue
        results.append(bench_engine(engine, utterances, progress=not args.json))
    if args.json:
        print(json.dumps({"results": results, "skipped": skipped}, indent=1))
        return 0
    for r in results:
        print(f"{r['engine']:8} RTF {r['rtf']:.3f}  latency p50 {r['latency_ms_p50']:.0f} ms  "
              f"p95 {r['latency_ms_p95']:.0f} ms  ({r['utterances']} utterances, {r['audio_seconds']} s)")
    for name, why in skipped.items():
        print(f"{name:8} skipped: {why}")
    return 0


def run_vad(args: argparse.Namespace) -> int:
    from voicebot.speech.endpointer import Endpointer
    from voicebot.speech.vad import VadConfig

    speech = telephone_utterances()
    results = []
    for rate in (8000, 16000):
        from voicebot.speech.audio import resample

        audio = np.concatenate([np.concatenate([resample(s, r, rate), np.zeros(rate, np.int16)])
                                for s, r in speech] * 4)
        n = rate // 50
        frames = [audio[i:i + n] for i in range(0, len(audio) - n + 1, n)]
        ep = Endpointer(VadConfig(), rate)
        t0 = time.perf_counter()
        events = sum(len(ep.push(f)) for f in frames)
        elapsed = time.perf_counter() - t0
        results.append({"rate": rate, "frames": len(frames), "frames_per_second": round(len(frames) / elapsed),
                        "realtime_x": round(len(frames) * 0.02 / elapsed), "events": events})
    if args.json:
        print(json.dumps({"results": results}, indent=1))
    else:
        for r in results:
            print(f"{r['rate']} Hz: {r['frames_per_second']} frames/s ({r['realtime_x']}x real time, "
                  f"{r['frames']} frames, {r['events']} events)")
    return 0
