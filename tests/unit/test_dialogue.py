"""The dialogue engine with scripted events: no audio, no network, no clock of its own."""

from __future__ import annotations

import datetime as dt

import pytest

from voicebot.config import load_settings
from voicebot.dialogue import (Ask, ChatMessage, Conversation, DialogueEngine, Digit, End, Hangup,
                               OfferSms, Say, SendSms, Silence, Transfer, Utterance)
from voicebot.knowledge import load_for_settings
from voicebot.nlu import matcher_for_settings

MONDAY_NOON = dt.datetime(2026, 11, 23, 11, 0, tzinfo=dt.timezone.utc)     # 12:00 in Copenhagen
SATURDAY = dt.datetime(2026, 11, 28, 11, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def parts():
    settings = load_settings()
    kb = load_for_settings(settings)
    return kb, matcher_for_settings(settings, kb)


@pytest.fixture
def engine(parts):
    return DialogueEngine(*parts, now=lambda: MONDAY_NOON)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def test_voice_answer_then_sms_then_goodbye(engine):
    conv = Conversation("voice")
    actions = engine.handle(conv, Utterance("jeg har mistet mit pas", 0.9))
    assert kinds(actions) == ["Say", "OfferSms"]
    assert actions[0].article_id == "pas-mistet" and "politi" in actions[0].text
    actions = engine.handle(conv, Utterance("ja tak"))
    assert isinstance(actions[0], SendSms) and actions[0].article_id == "pas-mistet"
    assert isinstance(actions[-1], Ask) and actions[-1].kind == "anything_else"
    actions = engine.handle(conv, Utterance("nej tak"))
    assert isinstance(actions[-1], End) and conv.ended and conv.outcome == "resolved"
    assert engine.handle(conv, Utterance("hallo?")) == []


def test_followup_uses_previous_intent(engine):
    conv = Conversation("chat")
    engine.handle(conv, ChatMessage("jeg skal have nyt pas"))
    actions = engine.handle(conv, ChatMessage("og hvad koster det?"))
    assert actions[0].article_id == "pas" and "pris" in actions[0].text.lower()
    # a follow-up naming a new subject answers for that subject
    actions = engine.handle(conv, ChatMessage("hvad koster det blå sygesikringskort"))
    assert actions[0].article_id == "eu-sygesikringskort" and "gratis" in actions[0].text


def test_offer_transfer_to_department(engine):
    conv = Conversation("voice")
    actions = engine.handle(conv, Utterance("mit skrald er ikke blevet hentet"))
    assert kinds(actions) == ["Say", "Ask"] and actions[1].kind == "confirm_transfer"
    actions = engine.handle(conv, Digit("1"))
    transfer = actions[-1]
    assert isinstance(transfer, Transfer) and transfer.target == "dept-affald"
    assert conv.outcome == "transferred"


def test_human_queue_open_and_closed(parts):
    conv = Conversation("voice")
    actions = DialogueEngine(*parts, now=lambda: MONDAY_NOON).handle(conv, Utterance("jeg vil tale med et menneske"))
    assert isinstance(actions[-1], Transfer) and actions[-1].target == "human-queue" and actions[-1].is_open
    conv = Conversation("voice")
    actions = DialogueEngine(*parts, now=lambda: SATURDAY).handle(conv, Utterance("giv mig en medarbejder"))
    assert actions[-1].is_open is False
    assert any(isinstance(a, Say) and "lukket" in a.text for a in actions)


def test_not_understood_twice_goes_to_a_human(engine):
    conv = Conversation("voice")
    first = engine.handle(conv, Utterance("hvad bliver vejret i morgen"))
    assert kinds(first) == ["Ask"] and first[0].kind == "rephrase"
    second = engine.handle(conv, Utterance("kan jeg bestille en pizza"))
    assert isinstance(second[-1], Transfer) and second[-1].department == "borgerservice"


def test_low_asr_confidence_is_not_trusted(engine):
    conv = Conversation("voice")
    actions = engine.handle(conv, Utterance("jeg har mistet mit pas", confidence=0.1))
    assert actions[0].kind == "rephrase"


def test_clarify_and_choose_by_digit_or_words(engine):
    conv = Conversation("voice")
    from voicebot.nlu.matcher import MatchResult
    result = MatchResult("pas", 0.5, 0.01, "ask", (("pas", 2.0), ("pas-mistet", 1.99)))
    actions = engine._clarify(conv, result)
    assert actions[0].kind == "clarify" and [o.digit for o in actions[0].options] == ["1", "2"]
    assert engine.handle(conv, Digit("2"))[0].article_id == "pas-mistet"
    engine._clarify(conv, result)
    assert engine.handle(conv, Utterance("den første"))[0].article_id == "pas"


def test_silence_and_hangup(engine):
    conv = Conversation("voice")
    assert engine.handle(conv, Silence(5))[0].kind == "rephrase"
    actions = engine.handle(conv, Silence(5))
    assert isinstance(actions[-1], End) and actions[-1].reason == "silence"
    conv = Conversation("voice")
    assert engine.handle(conv, Hangup()) == [End("hangup")] and conv.outcome == "abandoned"


def test_keypad_zero_reaches_a_human(engine):
    actions = engine.handle(Conversation("voice"), Digit("0"))
    assert isinstance(actions[-1], Transfer) and actions[-1].target == "human-queue"


def test_chat_uses_chat_text_and_no_sms(engine):
    conv = Conversation("chat")
    actions = engine.handle(conv, ChatMessage("jeg har mistet mit pas"))
    assert kinds(actions) == ["Say"] and not any(isinstance(a, OfferSms) for a in actions)
    assert actions[0].text == engine.kb.by_id["pas-mistet"].answer_chat
