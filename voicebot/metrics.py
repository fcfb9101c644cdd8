"""Prometheus metrics: what ops graph and alert on (served on the admin listener, ``/metrics``).

Counters and histograms are fed where the bot already writes its records (store/recorder.py),
so the phone and the chat are counted the same way; live values (calls in progress, decodes
waiting, speculative decodes) are read when Prometheus scrapes. Labels have a bounded set of
values: channel, decision, outcome kind, transfer target (the configured departments), HTTP
status. Nothing about a caller is ever a label.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

REGISTRY = CollectorRegistry()

TURNS = Counter("voicebot_turns", "Conversation turns by channel and the bot's decision",
                ["channel", "decision"], registry=REGISTRY)
CONVERSATIONS = Counter("voicebot_conversations", "Finished conversations by channel and outcome "
                        "(target: the department or queue of a transfer)",
                        ["channel", "outcome", "target"], registry=REGISTRY)
TURN_LATENCY = Histogram("voicebot_turn_latency_seconds", "The caller stopped (or the message "
                         "arrived) until the reply started: end-of-turn wait + ASR + match + audio out",
                         ["channel"], buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0),
                         registry=REGISTRY)
ASR_WAIT = Histogram("voicebot_asr_wait_seconds", "End of the caller's turn until the transcript "
                     "(queue + decode; a speculative decode started earlier)",
                     buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0), registry=REGISTRY)
CHAT_REQUESTS = Counter("voicebot_chat_requests", "POST /api/chat requests by HTTP status",
                        ["status"], registry=REGISTRY)

# the parts of a turn's timings (ms) that add up to its latency
LATENCY_PARTS = ("eos_wait_ms", "asr_ms", "match_ms", "first_audio_ms")


def count_turn(channel: str, decision: str, timings: dict[str, int]) -> None:
    TURNS.labels(channel, decision).inc()
    if "asr_ms" in timings:
        ASR_WAIT.observe(timings["asr_ms"] / 1000)
    if "match_ms" in timings:  # a turn the caller or user started (not the greeting)
        TURN_LATENCY.labels(channel).observe(sum(timings.get(k, 0) for k in LATENCY_PARTS) / 1000)


def count_conversation(channel: str, outcome: str) -> None:
    kind, _, target = outcome.partition(":")
    CONVERSATIONS.labels(channel, kind, target).inc()


class _Live:
    """Values read at scrape time from the running bot (set by ``serve``)."""

    def __init__(self) -> None:
        self.calls: Callable[[], int] | None = None
        self.pending_decodes: Callable[[], int] | None = None
        self.speculations: Callable[[], dict[str, int]] | None = None

    def collect(self):
        if self.calls is not None:
            yield GaugeMetricFamily("voicebot_calls_active", "Calls in the bot now", value=self.calls())
        if self.pending_decodes is not None:
            yield GaugeMetricFamily("voicebot_asr_pending", "Utterances waiting for or in speech "
                                    "recognition (all calls)", value=self.pending_decodes())
        if self.speculations is not None:
            family = CounterMetricFamily("voicebot_asr_speculations", "Decodes started at a pause in "
                                         "the caller's speech, by fate: used, wasted (ran, the caller "
                                         "went on), skipped (dropped while queued)", labels=["fate"])
            for fate, n in self.speculations().items():
                if fate != "started":
                    family.add_metric([fate], n)
            yield family


LIVE = _Live()
REGISTRY.register(LIVE)


def exposition() -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(REGISTRY)
