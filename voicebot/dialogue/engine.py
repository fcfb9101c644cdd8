"""The channel-agnostic conversation engine: events in, actions out, no I/O.

State lives in a ``Conversation`` the caller keeps (one per call or chat session); the engine
holds only read-only things (knowledge, matcher, texts, clock), so one engine serves every
conversation and every path is a fast unit test with scripted events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Literal

from voicebot.dialogue.events import (Action, Ask, AskKind, ChatMessage, Digit, End, Event, Hangup,
                                      OfferSms, Option, Say, SendSms, Silence, Transfer, Utterance)
from voicebot.dialogue.texts import DialogueTexts
from voicebot.knowledge import HUMAN, Article, KnowledgeBase
from voicebot.nlu.followup import (choice_index, content_words, followup_topic, is_closing, is_no,
                                   is_yes)
from voicebot.nlu.matcher import NONE, IntentMatcher, MatchResult

Channel = Literal["voice", "chat"]


@dataclasses.dataclass
class Pending:
    """The question the conversation is waiting on."""

    kind: AskKind
    options: tuple[Option, ...] = ()
    article_id: str | None = None
    department: str | None = None


@dataclasses.dataclass
class Conversation:
    """Per-conversation state; owned by the channel, changed only by the engine."""

    channel: Channel
    id: str = ""
    last_intent: str | None = None
    intents: list[str] = dataclasses.field(default_factory=list)
    pending: Pending | None = None
    misunderstood: int = 0
    silences: int = 0
    outcome: str = "open"  # open, resolved, transferred, abandoned
    ended: bool = False
    last_result: MatchResult | None = None  # the matcher's verdict on the latest text, if any


class DialogueEngine:
    def __init__(self, kb: KnowledgeBase, matcher: IntentMatcher, *, texts: DialogueTexts | None = None,
                 now: Callable[[], dt.datetime] | None = None, low_asr_confidence: float = 0.3,
                 max_misunderstood: int = 2, max_silences: int = 2) -> None:
        self.kb, self.matcher = kb, matcher
        self.t = texts or DialogueTexts()
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.low_asr_confidence = low_asr_confidence
        self.max_misunderstood, self.max_silences = max_misunderstood, max_silences

    # -- entry points ------------------------------------------------------------------------

    def handle(self, conv: Conversation, event: Event) -> list[Action]:
        """React to one event; returns the actions for the channel to perform in order."""
        if conv.ended:
            return []
        if isinstance(event, Hangup):
            return self._end(conv, "hangup", say=False)
        if isinstance(event, Silence):
            return self._silence(conv)
        if isinstance(event, Digit):
            return self._digit(conv, event.digit)
        if isinstance(event, (Utterance, ChatMessage)):
            confidence = event.confidence if isinstance(event, Utterance) else 1.0
            conv.silences = 0
            return self._text(conv, event.text, confidence)
        raise TypeError(f"not a dialogue event: {event!r}")

    # -- text --------------------------------------------------------------------------------

    def _text(self, conv: Conversation, text: str, asr_confidence: float) -> list[Action]:
        conv.last_result = None
        if conv.pending is not None:
            pending, conv.pending = conv.pending, None
            actions = self._answer_pending(conv, pending, text)
            if actions is not None:
                return actions
        if is_closing(text) and conv.intents:
            return self._end(conv, "goodbye")
        if asr_confidence < self.low_asr_confidence:
            return self._misunderstood(conv)
        result = conv.last_result = self.matcher.match(text)
        topic = followup_topic(text)
        if topic and conv.last_intent in self.kb.by_id and self._is_followup(conv, result, text):
            return self._followup(conv, self.kb.by_id[conv.last_intent], topic)
        if result.decision == "none":
            return self._misunderstood(conv)
        if result.decision == "ask":
            return self._clarify(conv, result)
        article = self.kb.by_id[result.intent]
        if topic and topic in article.followups:
            return self._followup(conv, article, topic)
        return self._answer(conv, article)

    @staticmethod
    def _is_followup(conv: Conversation, result: MatchResult, text: str) -> bool:
        """A topic question refers to the previous article unless it names another subject."""
        names_other = (result.decision == "answer" and result.intent not in (NONE, conv.last_intent)
                       and bool(content_words(text)))
        return not names_other

    def _answer_pending(self, conv: Conversation, pending: Pending, text: str) -> list[Action] | None:
        """Resolve the open question; None means "not an answer, treat it as a new question"."""
        if pending.kind == "clarify":
            return self._choose(conv, pending, text)
        if pending.kind == "confirm_transfer" and pending.department:
            if is_yes(text):
                return self._transfer(conv, pending.department, "offered")
            if is_no(text):
                return [Say(self.t.okay), *self._anything_else(conv)]
        if pending.kind == "sms" and pending.article_id in self.kb.by_id:
            if is_yes(text):
                article = self.kb.by_id[pending.article_id]
                return [SendSms(article.id, article.sms), Say(self.t.sms_sent), *self._anything_else(conv)]
            if is_no(text):
                return self._anything_else(conv)
        if pending.kind == "anything_else" and (is_no(text) or is_closing(text)):
            return self._end(conv, "goodbye")
        return None

    def _choose(self, conv: Conversation, pending: Pending, text: str) -> list[Action] | None:
        keys = [o.key for o in pending.options if o.key in self.kb.by_id]  # knowledge may be reloaded
        if not keys:
            return None
        index = choice_index(text)
        if index is not None and index < len(keys):
            return self._answer(conv, self.kb.by_id[keys[index]])
        result = conv.last_result = self.matcher.match(text)
        for intent, _ in result.ranked[:2]:
            if intent in keys:
                return self._answer(conv, self.kb.by_id[intent])
        if is_yes(text):
            return self._answer(conv, self.kb.by_id[keys[0]])
        return None

    # -- keypad and silence ------------------------------------------------------------------

    def _digit(self, conv: Conversation, digit: str) -> list[Action]:
        pending, conv.pending = conv.pending, None
        if pending is not None:
            option = next((o for o in pending.options if o.digit == digit), None)
            if option is not None:
                word = option.key if option.key in ("yes", "no") else None
                if word is None and option.key in self.kb.by_id:
                    return self._answer(conv, self.kb.by_id[option.key])
                if word is not None:
                    actions = self._answer_pending(conv, pending, self.t.yes if word == "yes" else self.t.no)
                    if actions is not None:
                        return actions
        if digit == "0":
            return self._transfer(conv, HUMAN, "keypad")
        conv.pending = pending
        return [Ask(self.t.rephrase_voice, "rephrase")]

    def _silence(self, conv: Conversation) -> list[Action]:
        conv.silences += 1
        if conv.silences >= self.max_silences:
            return self._end(conv, "silence")
        return [Ask(self.t.still_there, "rephrase")]

    # -- outcomes ----------------------------------------------------------------------------

    def _answer(self, conv: Conversation, article: Article) -> list[Action]:
        conv.last_intent = article.id
        conv.intents.append(article.id)
        conv.misunderstood = 0
        voice = conv.channel == "voice"
        if article.action.kind == "transfer" and article.action.department:
            say = Say(article.answer_voice if voice else article.answer_chat, article.id, article.link,
                      article.recording if voice else None)
            return [say, *self._transfer(conv, article.action.department, article.id, announce=False)]
        conv.outcome = "resolved"
        actions: list[Action] = [Say(article.answer_voice if voice else article.answer_chat, article.id,
                                     article.link, article.recording if voice else None)]
        if article.action.kind == "answer_then_offer_transfer" and article.action.department:
            dept = self.kb.directory.departments[article.action.department] if self.kb.directory else None
            name = dept.name if dept else article.action.department
            question = (self.t.offer_transfer if voice else self.t.offer_transfer_chat).format(name=name)
            conv.pending = Pending("confirm_transfer", self._yes_no(), article.id, article.action.department)
            return [*actions, Ask(question, "confirm_transfer", conv.pending.options)]
        if voice and article.sms:
            conv.pending = Pending("sms", self._yes_no(), article.id)
            return [*actions, OfferSms(article.id, article.sms, self.t.offer_sms)]
        return actions + (self._anything_else(conv) if voice else [])

    def _followup(self, conv: Conversation, article: Article, topic: str) -> list[Action]:
        conv.last_intent = article.id
        if article.id not in conv.intents:
            conv.intents.append(article.id)
        text = article.followups.get(topic) or self.t.no_followup.format(link=article.link)
        actions: list[Action] = [Say(text, article.id, article.link)]
        return actions + (self._anything_else(conv) if conv.channel == "voice" else [])

    def _clarify(self, conv: Conversation, result: MatchResult) -> list[Action]:
        a, b = (self.kb.by_id[i] for i in result.top_two)
        options = (Option(a.id, a.title, "1"), Option(b.id, b.title, "2"))
        text = self.t.clarify.format(a=a.title.lower(), b=b.title.lower())
        if conv.channel == "voice":
            text += self.t.clarify_voice_keys.format(a=a.title.lower(), b=b.title.lower())
        conv.pending = Pending("clarify", options)
        return [Ask(text, "clarify", options)]

    def _misunderstood(self, conv: Conversation) -> list[Action]:
        conv.misunderstood += 1
        voice = conv.channel == "voice"
        if conv.misunderstood >= self.max_misunderstood:
            conv.misunderstood = 0
            return [Say(self.t.give_up_voice if voice else self.t.give_up_chat),
                    *self._transfer(conv, HUMAN, "not_understood", announce=False)]
        return [Ask(self.t.rephrase_voice if voice else self.t.rephrase_chat, "rephrase")]

    def _transfer(self, conv: Conversation, department: str, reason: str, *,
                  announce: bool = True) -> list[Action]:
        directory = self.kb.directory
        dept = directory.departments.get(department) if directory else None
        if dept is None:  # a knowledge base without config: hand the id to the dialplan as is
            return [Transfer(department, department, department, reason)]
        schedule = directory.schedule(department)
        is_open = schedule.is_open(self.now()) if schedule else None
        hours = schedule.describe() if schedule else ""
        actions: list[Action] = []
        if conv.channel == "voice":
            conv.outcome = "transferred"
            if is_open is False:
                actions.append(Say(self.t.closed.format(name=dept.name, hours=hours)))
            elif announce:
                actions.append(Say(self.t.transferring.format(name=dept.name)))
        return actions + [Transfer(department, dept.target, dept.name, reason, is_open, hours,
                                   dept.phone, dept.link)]

    def _anything_else(self, conv: Conversation) -> list[Action]:
        conv.pending = Pending("anything_else", self._yes_no())
        return [Ask(self.t.anything_else, "anything_else", conv.pending.options)]

    def _end(self, conv: Conversation, reason: str, *, say: bool = True) -> list[Action]:
        conv.ended = True
        conv.pending = None
        if conv.outcome == "open":
            conv.outcome = "abandoned"
        return ([Say(self.t.goodbye)] if say else []) + [End(reason)]

    def _yes_no(self) -> tuple[Option, ...]:
        return (Option("yes", self.t.yes, "1"), Option("no", self.t.no, "2"))
