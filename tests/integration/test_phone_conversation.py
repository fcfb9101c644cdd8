"""The phone conversation on real calls: answers, SMS, survey, transfers, the keypad menu,
silence, hang-ups, failures and what is (not) stored.

Everything is real — SIP, RTP, VAD, barge-in, TTS, the dialplan, AMI, the SQLite store — except
the words: the bot runs the declared test recognizer (``speech.asr.engine: script``), which
returns the texts the caller sends in its ``X-Voicebot-Asr-Script`` header, one per utterance
the real VAD cuts (DESIGN.md §9: no Danish voice Whisper understands can be synthesized here).
The real recognizer is proven on real speech in test_voice_calls.py and test_asr_engines.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.telephony import (CLOSED_TIME, OPEN_TIME, BotProcess, cli, set_clock, sip_password,
                                         wait_for)
from voicebot.config import PROJECT_ROOT
from voicebot.sip.caller import RATE, AgentPhone
from voicebot.sip.script import Step, espeak_tts, new_ref, render, run_script

pytestmark = pytest.mark.integration

MAIN = "33663366"
BUF = "33663300"  # Børne- og Ungdomsforvaltningen's own number (dialplans/10-main-number.conf)
MOBILE = "+4520123456"  # a Danish mobile number: SMS can be sent to it
LANDLINE = "+4533123456"
CPR = "010190-1234"


# The open-hours greeting is ~14.5 s; every flow test waits for it, so these tests use a short one
# (the full greeting is tested in test_pbx_calls.py; the closed-hours one stays as shipped).
SHORT_GREETING = "dialogue:\n  greeting_voice: Velkommen til Borgerservice. Hvad ringer du om?\n"


@pytest.fixture(scope="module")
def flow_bot(asterisk, tmp_path_factory):
    proc = BotProcess(tmp_path_factory.mktemp("flowbot"), "speech:\n  asr:\n    engine: script\n" + SHORT_GREETING,
                      env={"VOICEBOT_ALLOW_TEST_RECOGNIZER": "1"})
    proc.start()
    yield proc
    if proc.proc is not None:
        proc.stop()


def steps(*entries: dict) -> list[Step]:
    return [Step(**e) for e in entries]


_tts_memo: dict[str, np.ndarray] = {}


def _tts(text: str) -> np.ndarray:
    if text not in _tts_memo:
        _tts_memo[text] = espeak_tts(text)
    return _tts_memo[text]


async def _scripted(script: list[Step], caller: str, timeout: float, number: str = MAIN):
    ref = new_ref()
    report = await run_script(script, render(script, _tts), number, "softphone", sip_password(), ref=ref,
                              timeout=timeout, caller_id=caller)
    return ref, report


def scripted_call(bot: BotProcess, script: list[Step], *, caller: str = MOBILE, timeout: float = 60.0,
                  agents: tuple[str, ...] = (), number: str = MAIN):
    """Place a scripted call (with agent phones registered for its duration); returns the call
    report, the bot's record of the call and its SMS."""
    async def go():
        phones = [await AgentPhone(a, sip_password(a), audio=_tone()).start() for a in agents]
        try:
            ref, report = await _scripted(script, caller, timeout, number)
        finally:
            await asyncio.sleep(0.5)
            for phone in phones:
                await phone.close()
        return ref, report, phones

    ref, report, phones = asyncio.run(go())
    record = _record(bot, ref)
    return report, record, phones


def _record(bot: BotProcess, ref: str, timeout: float = 10.0) -> dict:
    store = bot.store()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = store.by_ref(ref)
            if found and found[0].ended_at:
                record = found[0].as_dict()
                record["sms"] = [m.as_dict() for m in store.sms_for(found[0].id)]
                return record
            time.sleep(0.1)
    finally:
        store.close()
    raise AssertionError(f"the bot wrote no finished record for ref {ref}:\n{bot.log()[-3000:]}")


def _tone() -> np.ndarray:
    return (np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE) * 8000).astype(np.int16)


def said(record: dict) -> str:
    return " ".join(" ".join(t["said"]) for t in record["turns"])


# ---- answers, SMS, survey ------------------------------------------------------------------------

def test_answer_then_sms_yes_queues_one_sms_without_personal_data(flow_bot):
    set_clock(OPEN_TIME)
    report, record, _ = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "Jeg har mistet mit pas"}, {"wait_bot": True}, {"say": "ja"},
        {"wait_bot": True}, {"hangup": True}))
    assert report.answered
    assert [t["intent"] for t in record["turns"] if t["decision"] == "answer"] == ["pas-mistet"]
    assert record["outcome"] == "resolved"
    assert len(record["sms"]) == 1 and "politi" in record["sms"][0]["text"]
    assert record["sms"][0]["article_id"] == "pas-mistet"
    assert "Du får en sms" in said(record)
    # per-step timings of the answer turn
    timings = next(t["timings"] for t in record["turns"] if t["decision"] == "answer")
    assert {"asr_ms", "match_ms", "first_audio_ms", "eos_wait_ms"} <= set(timings)
    assert record["caller_tail"] == "56" and MOBILE not in str(record)


def _metrics(bot: BotProcess) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{bot.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_the_call_on_the_admin_port_only(flow_bot):
    import urllib.error
    import urllib.request

    set_clock(OPEN_TIME)
    before = _metrics(flow_bot)
    scripted_call(flow_bot, steps({"wait_bot": True}, {"say": "Jeg har mistet mit pas"}, {"wait_bot": True},
                                  {"say": "nej"}, {"wait_bot": True}, {"hangup": True}))
    after = _metrics(flow_bot)

    def grew(name: str, **labels) -> float:
        key = f"{name}{sorted(labels.items())}"
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("voicebot_turns_total", channel="voice", decision="answer") == 1
    assert grew("voicebot_conversations_total", channel="voice", outcome="resolved", target="") == 1
    assert grew("voicebot_turn_latency_seconds_count", channel="voice") >= 2  # the question and "nej"
    assert grew("voicebot_asr_wait_seconds_count") >= 2
    assert after["voicebot_calls_active[]"] == 0 and "voicebot_asr_pending[]" in after
    with pytest.raises(urllib.error.HTTPError) as public:  # never on the public (chat) port
        urllib.request.urlopen(f"http://127.0.0.1:{flow_bot.port}/metrics", timeout=5)
    assert public.value.code == 404


def test_answer_no_sms_goodbye_and_survey_by_keypad(flow_bot):
    set_clock(OPEN_TIME)
    report, record, _ = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "Jeg har mistet mit pas"}, {"wait_bot": True}, {"say": "nej"},
        {"wait_bot": True}, {"say": "farvel"}, {"wait_bot": True}, {"dtmf": "4"}, {"wait": 8}))
    assert record["survey"] == 4 and record["outcome"] == "resolved"
    assert record["sms"] == []
    assert report.hangup_by == "bot"  # thanked and ended by the bot
    assert "Tak for din vurdering" in said(record)


def test_landline_caller_hears_the_address_instead_of_an_sms_offer(flow_bot):
    set_clock(OPEN_TIME)
    _, record, _ = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "Jeg har mistet mit pas"}, {"wait_bot": True}, {"hangup": True}),
        caller=LANDLINE)
    assert "kk punktum dk" in said(record) and record["sms"] == []


# ---- transfers and the human queue ---------------------------------------------------------------

def test_pladsanvisning_reaches_the_department_agent_with_the_context(flow_bot):
    set_clock(OPEN_TIME)
    report, record, phones = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "Jeg skal skrive mit barn op til vuggestue"}, {"wait_bot": True},
        {"say": "ja"}, {"wait": 10}, {"hangup": True}), agents=("agent-pladsanvisning",))
    assert record["outcome"] == "transferred:pladsanvisning"
    assert record["tenant"] == "buf"  # the main number's bot answered with BUF's article: BUF's record
    agent = phones[0]
    assert len(agent.answered) == 1, "the Pladsanvisning agent's phone was not rung"
    invite = agent.invites[0]
    assert invite.get("X-Voicebot-Intent") == "pladsanvisning"
    assert "vuggestue" in invite.get("X-Voicebot-Summary")
    assert "PLADSANVISNING" in invite.get("From")  # the caller-id name the agent sees


def test_a_tenants_own_number_greets_as_the_tenant_and_medarbejder_reaches_its_queue(flow_bot):
    set_clock(OPEN_TIME)
    report, record, phones = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "medarbejder"}, {"wait": 10}, {"hangup": True}),
        agents=("agent-pladsanvisning",), number=BUF)
    assert "Børne- og Ungdomsforvaltningen" in record["turns"][0]["said"][0]
    assert record["tenant"] == "buf" and record["outcome"] == "transferred:pladsanvisning"
    assert len(phones[0].answered) == 1, "the Pladsanvisning agent's phone was not rung"


def test_medarbejder_in_opening_hours_says_the_queue_and_reaches_agent1(flow_bot):
    set_clock(OPEN_TIME)
    report, record, phones = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "medarbejder"}, {"wait": 12}, {"hangup": True}), agents=("agent1",))
    assert record["outcome"] == "transferred:human-queue"
    assert len(phones[0].answered) == 1, "agent1 was not rung"
    assert "'queue status said'" in flow_bot.log() and "Der er ingen foran dig" in flow_bot.log()
    # agent1 answered: AMI's AgentConnect named the record (VOICEBOT_RECORD), which the bot marked
    assert record["staff_reached_at"] and record["staff_queue"] == "borgerservice", flow_bot.log()[-3000:]
    assert record["staff_reached_at"] > record["started_at"]


def test_keypad_zero_goes_to_the_human_queue(flow_bot):
    set_clock(OPEN_TIME)
    _, record, phones = scripted_call(flow_bot, steps({"wait_bot": True}, {"dtmf": "0"}, {"wait": 10},
                                                      {"hangup": True}), agents=("agent1",))
    assert record["outcome"] == "transferred:human-queue" and len(phones[0].answered) == 1


def test_closed_hours_give_the_hours_and_an_sms_offer(flow_bot):
    set_clock(CLOSED_TIME)
    _, record, _ = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "jeg vil tale med en medarbejder"}, {"wait_bot": True}, {"say": "ja"},
        {"wait_bot": True}, {"hangup": True}))
    text = said(record)
    assert "lukket lige nu" in text and "på mandag klokken 11" in text  # the greeting
    assert "telefontid mandag 11 til 17" in text
    assert record["outcome"] == "unresolved" and len(record["sms"]) == 1


# ---- not understood, silence, hang-up, failure ---------------------------------------------------

def test_two_unclear_utterances_give_the_keypad_menu_and_a_digit_works(flow_bot):
    set_clock(OPEN_TIME)
    _, record, _ = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "hvad bliver vejret i morgen"}, {"wait_bot": True},
        {"say": "kan jeg bestille en pizza"}, {"wait_bot": True}, {"dtmf": "1"}, {"wait_bot": True},
        {"dtmf": "1"}, {"wait_bot": True}, {"hangup": True}))
    decisions = [t["decision"] for t in record["turns"]]
    assert decisions[1:4] == ["rephrase", "menu", "answer"], decisions
    assert record["turns"][3]["intent"] == "pas"
    assert len(record["sms"]) == 1 and record["outcome"] == "resolved"


def test_silence_gets_two_reprompts_then_a_polite_end(flow_bot):
    set_clock(OPEN_TIME)
    report, record, _ = scripted_call(flow_bot, steps({"wait": 50}), timeout=60)
    assert report.hangup_by == "bot"
    assert [t["decision"] for t in record["turns"]][1:] == ["rephrase", "rephrase", "end"]
    assert said(record).count("Er du der stadig") == 2 and "Tak for henvendelsen" in said(record)


def test_caller_hanging_up_mid_answer_is_abandoned_and_leaks_nothing(flow_bot):
    set_clock(OPEN_TIME)
    # one call first: the bot opens some things lazily at its first call (the baseline is after)
    scripted_call(flow_bot, steps({"wait_bot": True}, {"hangup": True}))
    wait_for(lambda: flow_bot.health().get("calls") == 0, 5, "the bot to forget the warm-up call")
    before = flow_bot.health()
    log_before = len(flow_bot.log())
    _, record, _ = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "Jeg har mistet mit pas"}, {"wait": 2.5}, {"hangup": True}))
    assert record["outcome"] == "abandoned"
    # the answer the caller hung up on still carries its timings (record and log)
    answer = next(t for t in record["turns"] if t["decision"] == "answer")
    assert {"eos_wait_ms", "match_ms", "first_audio_ms"} <= set(answer["timings"]), answer
    assert any("'turn'" in line and "first_audio_ms=" in line and f"intent={answer['intent']}" in line
               for line in flow_bot.log()[log_before:].splitlines())
    wait_for(lambda: flow_bot.health().get("calls") == 0, 5, "the bot to forget the call")
    wait_for(lambda: flow_bot.health().get("tasks") == before["tasks"], 5, "the call's tasks to end")
    after = flow_bot.health()
    assert after["fds"] == before["fds"], (before, after)
    assert "0 active channels" in cli("core show channels count") or "0 active channel" in cli("core show channels count")
    assert cli("bridge show all").count("vb-") == 0


def test_a_failing_recognizer_hands_the_caller_to_a_human(flow_bot):
    set_clock(OPEN_TIME)
    report, record, phones = scripted_call(flow_bot, steps(
        {"wait_bot": True}, {"say": "!raise"}, {"wait": 12}, {"hangup": True}), agents=("agent1",))
    assert record["outcome"] == "failed"
    assert len(phones[0].answered) == 1, "agent1 was not rung after the recognizer failed"
    assert "speech recognition failed" in flow_bot.log()


# ---- personal data ---------------------------------------------------------------------------------

def test_a_cpr_number_said_on_the_phone_or_typed_in_the_chat_is_never_stored_or_logged(flow_bot):
    import json
    import urllib.request

    set_clock(OPEN_TIME)
    cache_before = _tts_cache_files()
    console_offset = _asterisk_console_size()
    _, record, _ = scripted_call(flow_bot, steps({"wait_bot": True}, {"say": f"mit cpr nummer er {CPR}"},
                                                 {"wait_bot": True}, {"hangup": True}))
    assert any("[CPR]" in t["heard"] for t in record["turns"]), record["turns"]
    # only known lines live in the TTS disk cache (all built before the call): a call adds none
    assert _tts_cache_files() - cache_before == set()
    body = json.dumps({"message": f"Mit CPR-nummer er {CPR.replace('-', '')}, kan I hjælpe?"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{flow_bot.port}/api/chat", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200
    time.sleep(0.5)
    places = {"bot log": flow_bot.log()}
    for path in flow_bot.workdir.glob("voicebot.db*"):  # the database and its WAL
        places[path.name] = path.read_bytes().decode("latin-1")
    for path in TTS_CACHE.rglob("*"):  # names and contents of the TTS cache
        places[f"tts cache name {path.name}"] = path.name
        if path.is_file():
            places[f"tts cache {path.name}"] = path.read_bytes().decode("latin-1")
    # Asterisk: no CDR/CEL/queue_log files, and neither its logs nor AstDB hold the number
    for sub in ("var/log/asterisk", "var/lib/asterisk", "var/spool/asterisk"):
        for path in (PBX_ROOT / sub).rglob("*"):
            if path.is_file() and "sounds" not in path.parts:
                places[str(path.relative_to(PBX_ROOT))] = path.read_bytes().decode("latin-1")
    with open(PBX_CONSOLE_LOG, "rb") as f:
        f.seek(console_offset)
        places["asterisk/run/asterisk.log"] = f.read().decode("latin-1")
    for name, text in places.items():
        # the caller's number is kept only in the SMS outbox (an earlier test queued an SMS)
        numbers = () if name.startswith("voicebot.db") else (MOBILE, MOBILE[3:])
        for digits in ("0101901234", "010190-1234", *numbers):
            assert digits not in text, f"{digits} found in {name}"


TTS_CACHE = PROJECT_ROOT / "cache" / "tts"
PBX_ROOT = PROJECT_ROOT / "asterisk" / "chroot"
PBX_CONSOLE_LOG = PROJECT_ROOT / "asterisk" / "run" / "asterisk.log"


def _tts_cache_files() -> set[Path]:
    return {p for p in TTS_CACHE.rglob("*.wav")}


def _asterisk_console_size() -> int:
    return PBX_CONSOLE_LOG.stat().st_size if PBX_CONSOLE_LOG.exists() else 0


def test_doctor_and_log_say_loudly_that_the_test_recognizer_is_on(flow_bot):
    assert "THE TEST RECOGNIZER IS ON" in flow_bot.log()
    assert flow_bot.health()["test_recognizer"] is True
