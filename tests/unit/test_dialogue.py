"""The dialogue engine with scripted events: no audio, no network, no clock of its own."""

from __future__ import annotations

import datetime as dt

import pytest

from voicebot.config import load_settings
from voicebot.dialogue import (Ask, ChatMessage, Conversation, DialogueEngine, Digit, End, Hangup,
                               OfferSms, SendSms, Silence, Transfer, Utterance)
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
    from voicebot.dialogue.runtime import engine_for

    return engine_for(load_settings(), *parts, now=lambda: MONDAY_NOON)


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
    assert isinstance(actions[-1], Ask) and actions[-1].kind == "survey"  # resolved: the survey
    assert [o.digit for o in actions[-1].options] == ["1", "2", "3", "4", "5"]
    actions = engine.handle(conv, Digit("4"))
    assert isinstance(actions[-1], End) and conv.ended and conv.outcome == "resolved" and conv.survey == 4
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
    assert not any(isinstance(a, Transfer) for a in actions)  # closed: nobody to transfer to
    assert "lukket" in actions[0].text and "mandag 11 til 17" in actions[0].text
    assert isinstance(actions[1], OfferSms) and "33 66 33 66" in actions[1].sms_text
    assert conv.outcome == "unresolved"


def test_not_understood_twice_gives_the_keypad_menu_then_a_human(engine):
    conv = Conversation("voice")
    first = engine.handle(conv, Utterance("hvad bliver vejret i morgen"))
    assert kinds(first) == ["Ask"] and first[0].kind == "rephrase"
    second = engine.handle(conv, Utterance("kan jeg bestille en pizza"))
    assert kinds(second) == ["Ask"] and second[0].kind == "menu"
    assert "tryk 1 for pas" in second[0].text and second[0].options[0].key == "pas"
    third = engine.handle(conv, Utterance("hvad med en kebab"))
    assert isinstance(third[-1], Transfer) and third[-1].department == "borgerservice"


def test_keypad_menu_digit_plays_the_article_and_offers_sms(engine):
    conv = Conversation("voice")
    engine.handle(conv, Utterance("hvad bliver vejret i morgen"))
    engine.handle(conv, Utterance("kan jeg bestille en pizza"))
    actions = engine.handle(conv, Digit("1"))
    assert kinds(actions) == ["Say", "OfferSms"] and actions[0].article_id == "pas"
    assert isinstance(engine.handle(conv, Digit("1"))[0], SendSms)


def test_chat_gives_up_after_two_misses(engine):
    conv = Conversation("chat")
    engine.handle(conv, ChatMessage("hvad bliver vejret i morgen"))
    actions = engine.handle(conv, ChatMessage("kan jeg bestille en pizza"))
    assert isinstance(actions[-1], Transfer) and actions[-1].department == "borgerservice"


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
    assert engine.handle(conv, Silence(5))[0].kind == "rephrase"  # two reprompts, then goodbye
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


def test_greeting_names_the_keypad_way_out_or_when_staff_are_back(parts):
    open_greeting = DialogueEngine(*parts, now=lambda: MONDAY_NOON).start(Conversation("voice"))
    assert "tryk 0" in open_greeting[0].text.lower() and "digital assistent" in open_greeting[0].text
    closed = DialogueEngine(*parts, now=lambda: SATURDAY).start(Conversation("voice"))
    assert "lukket" in closed[0].text and "på mandag klokken 11" in closed[0].text
    # the phone system's own verdict wins over the clock
    told_open = DialogueEngine(*parts, now=lambda: SATURDAY).start(Conversation("voice", human_open=True))
    assert told_open[0].text == open_greeting[0].text


def test_repeat_by_star_or_words(engine):
    conv = Conversation("voice")
    answer = engine.handle(conv, Utterance("jeg har mistet mit pas"))
    assert engine.handle(conv, Digit("*")) == answer
    assert engine.handle(conv, Utterance("gentag")) == answer
    assert isinstance(engine.handle(conv, Digit("1"))[0], SendSms)  # the SMS question still stands


def test_medarbejder_reaches_a_human_whatever_is_pending(engine):
    conv = Conversation("voice")
    from voicebot.nlu.matcher import MatchResult
    engine._clarify(conv, MatchResult("pas", 0.5, 0.01, "ask", (("pas", 2.0), ("pas-mistet", 1.99))))
    actions = engine.handle(conv, Utterance("jeg vil bare tale med en medarbejder"))
    assert isinstance(actions[-1], Transfer) and actions[-1].target == "human-queue"


def test_uncertain_transfer_is_confirmed_first(engine, monkeypatch):
    from voicebot.nlu.matcher import MatchResult
    conv = Conversation("voice")
    uncertain = MatchResult("pladsanvisning", 0.45, 0.2, "answer", (("pladsanvisning", 1.0), ("none", 0.5)))
    monkeypatch.setattr(engine.matcher, "match", lambda text: uncertain)
    actions = engine.handle(conv, Utterance("noget med mit barn"))
    assert kinds(actions) == ["Ask"] and actions[0].kind == "confirm_topic"
    assert actions[0].text.startswith("Handler det om pladsanvisning")
    monkeypatch.undo()
    actions = engine.handle(conv, Utterance("ja"))
    assert actions[0].article_id == "pladsanvisning" and actions[-1].kind == "confirm_transfer"


def test_no_mobile_number_reads_the_address_instead_of_sms(engine):
    conv = Conversation("voice", can_sms=False)
    actions = engine.handle(conv, Utterance("jeg har mistet mit pas"))
    assert not any(isinstance(a, OfferSms) for a in actions)
    assert "kk punktum dk skråstreg borgerservice" in actions[1].text


def test_no_agents_logged_in_gives_hours_and_sms(engine):
    from voicebot.dialogue import QueueUnavailable
    conv = Conversation("voice")
    engine.handle(conv, Digit("0"))
    actions = engine.handle(conv, QueueUnavailable("borgerservice"))
    assert "ingen medarbejdere" in actions[0].text and isinstance(actions[1], OfferSms)


def test_chat_survey_after_a_resolved_answer(engine):
    conv = Conversation("chat")
    engine.handle(conv, ChatMessage("jeg har mistet mit pas"))
    actions = engine.handle(conv, ChatMessage("tak for hjælpen"))
    assert actions[-1].kind == "survey"
    actions = engine.handle(conv, ChatMessage("5"))
    assert isinstance(actions[-1], End) and conv.survey == 5


def test_survey_words_and_unclear_answers():
    from voicebot.dialogue.engine import survey_score
    assert survey_score("fire") == 4 and survey_score("jeg giver en femmer") == 5
    assert survey_score("3") == 3 and survey_score("det ved jeg ikke") is None


def test_known_lines_cover_greetings_menu_and_answers(engine):
    lines = engine.known_lines()
    assert engine.t.greeting_voice in lines and engine.kb.by_id["pas"].answer_voice in lines
    assert any(line.startswith("Jeg forstod det desværre ikke. Vælg et emne") for line in lines)
    assert any("på mandag klokken 11" in line for line in lines)


def test_a_transfer_that_finds_no_agent_is_unresolved_not_transferred(engine):
    from voicebot.dialogue import QueueUnavailable
    conv = Conversation("voice")
    engine.handle(conv, Digit("0"))
    assert conv.outcome == "transferred"
    engine.handle(conv, QueueUnavailable("borgerservice"))
    assert conv.outcome == "unresolved"
