"""The channel-agnostic conversation engine: events in, actions out, no I/O.

State lives in a ``Conversation`` the caller keeps (one per call or chat session); the engine
holds only read-only things (knowledge, matcher, texts, rules, clock), so one engine serves every
conversation and every path is a fast unit test with scripted events.

The shape of a conversation: greeting → the caller's request → an article answer (then an SMS
offer when it has a link, then "anything else?"), a clarifying question with the top two, a
confirmation before an uncertain transfer, or a transfer. Two misses lead to a keypad menu of the
main topics (voice), a third to a human. ``*``/"gentag" repeats, ``0``/"medarbejder" reaches the
human route at any point. A resolved conversation ends with a 1-5 survey.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from typing import Literal

from voicebot.dialogue.events import (Action, Ask, AskKind, ChatMessage, Digit, End, Event, Hangup,
                                      OfferSms, Option, QueueUnavailable, Say, SendSms, Silence, Transfer,
                                      Utterance)
from voicebot.dialogue.texts import ConversationRules, DialogueTexts
from voicebot.knowledge import HUMAN, Article, KnowledgeBase
from voicebot.knowledge.tenants import Greeting
from voicebot.nlu.followup import (choice_index, content_words, followup_topic, is_closing, is_no,
                                   is_yes)
from voicebot.nlu.matcher import NONE, IntentMatcher, MatchResult
from voicebot.nlu.normalize import fold

Channel = Literal["voice", "chat"]

_HUMAN_WORDS = re.compile(r"\b(medarbejder\w*|menneske|en rigtig person|sagsbehandler\w*|operatoer\w*)\b")
_REPEAT_WORDS = re.compile(r"^(gentag\w*|kan du gentage\w*|sig det (lige )?igen|hvad sagde du)\b")
_SCORES = {"1": 1, "en": 1, "et": 1, "een": 1, "2": 2, "to": 2, "3": 3, "tre": 3, "4": 4, "fire": 4,
           "5": 5, "fem": 5}


def _words(text: str) -> str:
    return fold(" ".join(re.sub(r"[^\w\s]", " ", text.lower()).split()))


def wants_human(text: str) -> bool:
    """"medarbejder", "et menneske" …: the caller asks for a person, whatever else is pending."""
    return bool(_HUMAN_WORDS.search(_words(text)))


def wants_repeat(text: str) -> bool:
    return bool(_REPEAT_WORDS.match(_words(text)))


def survey_score(text: str) -> int | None:
    """The 1-5 score in an answer like "fire", "jeg giver en femmer" → None unless one is named."""
    words = _words(text).replace("femmer", "fem").replace("firer", "fire").split()
    scores = {_SCORES[w] for w in words if w in _SCORES and w not in ("en", "et")}
    if not scores:  # "en"/"et" is also the article: a score only when nothing else is named
        scores = {_SCORES[w] for w in words if w in _SCORES}
    return scores.pop() if len(scores) == 1 else None


@dataclasses.dataclass
class Pending:
    """The question the conversation is waiting on."""

    kind: AskKind
    options: tuple[Option, ...] = ()
    article_id: str | None = None
    department: str | None = None
    sms_text: str = ""


@dataclasses.dataclass
class Conversation:
    """Per-conversation state; owned by the channel, changed only by the engine."""

    channel: Channel
    id: str = ""
    tenant: str = ""                 # whose number or chat widget it came in on ("": the main number's)
    answered_by: str | None = None   # the tenant whose article answered first (the record's tenant)
    last_intent: str | None = None
    intents: list[str] = dataclasses.field(default_factory=list)
    pending: Pending | None = None
    misunderstood: int = 0
    silences: int = 0
    outcome: str = "open"  # open, resolved, transferred, unresolved, abandoned
    ended: bool = False
    last_result: MatchResult | None = None  # the matcher's verdict on the latest text, if any
    survey: int | None = None
    can_sms: bool = True             # voice: the caller id is a Danish mobile number
    human_open: bool | None = None   # the phone system's word on opening hours (None: the schedule)
    clock: dt.datetime | None = None  # the phone system's time at the start (None: the engine's clock)
    menu_shown: bool = False
    repeat: tuple[Action, ...] = ()  # what "gentag" / * says again


class DialogueEngine:
    def __init__(self, kb: KnowledgeBase, matcher: IntentMatcher, *, texts: DialogueTexts | None = None,
                 rules: ConversationRules | None = None, now: Callable[[], dt.datetime] | None = None) -> None:
        self.kb, self.matcher = kb, matcher
        self.t = texts or DialogueTexts()
        self.rules = rules or ConversationRules()
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))

    # -- entry points ------------------------------------------------------------------------

    def start(self, conv: Conversation) -> list[Action]:
        """The greeting. On the phone it names the keypad way out, or, when the human service is
        closed, says so and when it opens."""
        own = self._greeting(conv.tenant)
        if conv.channel == "chat":
            return [Say(own.chat or self.t.greeting_chat)]
        human = self.kb.human_for(conv.tenant)
        if self._is_open(conv, human) is False:
            schedule = self.kb.directory.schedule(human) if self.kb.directory else None
            opens = schedule.say_next_opening(self._now(conv)) if schedule else "senere"
            closed = own.voice_closed or self.t.greeting_voice_closed
            return self._remember(conv, [Say(closed.format(opens=opens))])
        return self._remember(conv, [Say(own.voice or self.t.greeting_voice)])

    def _greeting(self, tenant_id: str) -> Greeting:
        tenant = self.kb.tenant(tenant_id)
        return tenant.greeting if tenant is not None else Greeting()

    def handle(self, conv: Conversation, event: Event) -> list[Action]:
        """React to one event; returns the actions for the channel to perform in order."""
        if conv.ended:
            return []
        if isinstance(event, Hangup):
            return self._end(conv, "hangup", say=False)
        if isinstance(event, QueueUnavailable):
            return self._remember(conv, self._unavailable(conv, event.department, self.t.no_agents))
        if isinstance(event, Silence):
            return self._silence(conv)
        if isinstance(event, Digit):
            return self._remember(conv, self._digit(conv, event.digit))
        if isinstance(event, (Utterance, ChatMessage)):
            confidence = event.confidence if isinstance(event, Utterance) else 1.0
            conv.silences = 0
            return self._remember(conv, self._text(conv, event.text, confidence))
        raise TypeError(f"not a dialogue event: {event!r}")

    @staticmethod
    def _remember(conv: Conversation, actions: list[Action]) -> list[Action]:
        """Keep what was said (and asked) for "gentag"; a bare repeat keeps the old one."""
        spoken = tuple(a for a in actions if isinstance(a, (Say, Ask, OfferSms)))
        if spoken and not conv.ended:
            conv.repeat = spoken
        return actions

    # -- text --------------------------------------------------------------------------------

    def _text(self, conv: Conversation, text: str, asr_confidence: float) -> list[Action]:
        conv.last_result = None
        if wants_repeat(text):
            return self._repeat(conv)
        if wants_human(text) and not (conv.pending and conv.pending.kind == "survey"):
            conv.pending = None
            return self._transfer(conv, self.kb.human_for(conv.tenant), "asked")
        if conv.pending is not None:
            pending, conv.pending = conv.pending, None
            actions = self._answer_pending(conv, pending, text)
            if actions is not None:
                return actions
        if is_closing(text) and conv.intents:
            return self._finish(conv)
        if asr_confidence < self.rules.low_asr_confidence:
            return self._misunderstood(conv)
        result = conv.last_result = self.matcher.match(text)
        topic = followup_topic(text)
        if topic and conv.last_intent in self.kb.by_id and self._is_followup(conv, result, text):
            return self._followup(conv, self.kb.by_id[conv.last_intent], topic)
        if result.decision == "none":
            return self._misunderstood(conv)
        if result.decision == "ask":
            own = self._own_choice(conv, result)
            if own is None:
                return self._clarify(conv, result)
            result = conv.last_result = dataclasses.replace(result, intent=own, decision="answer")
        article = self.kb.by_id[result.intent]
        if topic and topic in article.followups:
            return self._followup(conv, article, topic)
        if article.action.kind != "answer" and result.confidence < self.rules.confirm_transfer_below:
            return self._confirm_topic(conv, article)
        return self._answer(conv, article)

    def _own_choice(self, conv: Conversation, result: MatchResult) -> str | None:
        """On a tenant's own number (or widget) a close call between its own article and another
        tenant's goes to its own: that is what its callers most likely mean."""
        if not conv.tenant or conv.tenant == self.kb.main:
            return None
        own = [i for i in result.top_two if self.kb.by_id[i].tenant == conv.tenant]
        return own[0] if len(own) == 1 else None

    @staticmethod
    def _is_followup(conv: Conversation, result: MatchResult, text: str) -> bool:
        """A topic question refers to the previous article unless it names another subject."""
        names_other = (result.decision == "answer" and result.intent not in (NONE, conv.last_intent)
                       and bool(content_words(text)))
        return not names_other

    def _answer_pending(self, conv: Conversation, pending: Pending, text: str) -> list[Action] | None:
        """Resolve the open question; None means "not an answer, treat it as a new question"."""
        kind = pending.kind
        if kind in ("clarify", "menu"):
            return self._choose(conv, pending, text)
        if kind == "survey":
            score = survey_score(text)
            if score is not None:
                conv.survey = score
                return self._end(conv, "goodbye", text=self.t.survey_thanks)
            return self._end(conv, "goodbye")
        if kind == "confirm_topic" and pending.article_id in self.kb.by_id:
            if is_yes(text):
                return self._answer(conv, self.kb.by_id[pending.article_id])
            if is_no(text):
                return self._misunderstood(conv)
        if kind == "confirm_transfer" and pending.department:
            if is_yes(text):
                return self._transfer(conv, pending.department, "offered")
            if is_no(text):
                return [Say(self.t.okay), *self._anything_else(conv)]
        if kind == "sms" and pending.sms_text:
            if is_yes(text):
                return [SendSms(pending.article_id or "", pending.sms_text), Say(self.t.sms_sent),
                        *self._anything_else(conv)]
            if is_no(text):
                return self._anything_else(conv)
        if kind == "anything_else" and (is_no(text) or is_closing(text)):
            return self._finish(conv)
        return None

    def _choose(self, conv: Conversation, pending: Pending, text: str) -> list[Action] | None:
        options = [o for o in pending.options if o.key in self.kb.by_id]  # knowledge may be reloaded
        if not options:
            return None
        said = _words(text)
        for option in options:  # a closed-set recognizer answers with the label itself
            if said and said in (_words(option.label), option.digit):
                return self._answer(conv, self.kb.by_id[option.key])
        keys = [o.key for o in options]
        index = choice_index(text)
        if index is not None and index < len(keys) and pending.kind == "clarify":
            return self._answer(conv, self.kb.by_id[keys[index]])
        result = conv.last_result = self.matcher.match(text)
        for intent, _ in result.ranked[:2]:
            if intent in keys:
                return self._answer(conv, self.kb.by_id[intent])
        if is_yes(text) and pending.kind == "clarify":
            return self._answer(conv, self.kb.by_id[keys[0]])
        if pending.kind == "menu":
            return self._misunderstood(conv)
        return None

    # -- keypad and silence ------------------------------------------------------------------

    def _digit(self, conv: Conversation, digit: str) -> list[Action]:
        if digit == "*":
            return self._repeat(conv)
        pending, conv.pending = conv.pending, None
        if pending is not None:
            option = next((o for o in pending.options if o.digit == digit), None)
            if option is not None:
                if option.key in self.kb.by_id:
                    return self._answer(conv, self.kb.by_id[option.key])
                word = {"yes": self.t.yes, "no": self.t.no}.get(option.key, option.label)
                actions = self._answer_pending(conv, pending, word)
                if actions is not None:
                    return actions
        if digit == "0":
            return self._transfer(conv, self.kb.human_for(conv.tenant), "keypad")
        conv.pending = pending
        return [Ask(self.t.unknown_key, "rephrase")]

    def _silence(self, conv: Conversation) -> list[Action]:
        conv.silences += 1
        if conv.pending is not None and conv.pending.kind == "survey":
            return self._end(conv, "goodbye")
        if conv.silences >= self.rules.max_silences:
            return self._end(conv, "silence")
        return [Ask(self.t.still_there, "rephrase")]

    def _repeat(self, conv: Conversation) -> list[Action]:
        if not conv.repeat:
            return [Ask(self.t.nothing_to_repeat, "rephrase")]
        return list(conv.repeat)

    # -- outcomes ----------------------------------------------------------------------------

    def _answer(self, conv: Conversation, article: Article) -> list[Action]:
        conv.last_intent = article.id
        conv.intents.append(article.id)
        conv.answered_by = conv.answered_by or article.tenant or None
        conv.misunderstood = 0
        voice = conv.channel == "voice"
        say = Say(article.answer_voice if voice else article.answer_chat, article.id, article.link,
                  article.recording if voice else None)
        if article.action.kind == "transfer" and article.action.department:
            return [say, *self._transfer(conv, article.action.department, article.id, announce=False)]
        if conv.outcome in ("open", "unresolved"):
            conv.outcome = "resolved"
        actions: list[Action] = [say]
        if article.action.kind == "answer_then_offer_transfer" and article.action.department:
            dept = self.kb.directory.departments.get(article.action.department) if self.kb.directory else None
            name = dept.name if dept else article.action.department
            question = (self.t.offer_transfer if voice else self.t.offer_transfer_chat).format(name=name)
            conv.pending = Pending("confirm_transfer", self._yes_no(), article.id, article.action.department)
            return [*actions, Ask(question, "confirm_transfer", conv.pending.options)]
        if voice and article.sms:
            return [*actions, *self._offer_sms(conv, article.id, article.sms, article.link)]
        return actions + (self._anything_else(conv) if voice else [])

    def _offer_sms(self, conv: Conversation, about: str, sms_text: str, link: str) -> list[Action]:
        """Offer the link by SMS; when the caller's number cannot take one, read the address."""
        if not conv.can_sms:
            return [Say(self.t.no_sms.format(link=spoken_address(link))), *self._anything_else(conv)]
        conv.pending = Pending("sms", self._yes_no(), about, sms_text=sms_text)
        return [OfferSms(about, sms_text, self.t.offer_sms)]

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

    def _confirm_topic(self, conv: Conversation, article: Article) -> list[Action]:
        """An uncertain match that would send the caller away is confirmed first."""
        conv.pending = Pending("confirm_topic", self._yes_no(), article.id)
        topic = article.title.split(" - ")[0].split(",")[0].lower()
        return [Ask(self.t.confirm_topic.format(topic=topic), "confirm_topic", conv.pending.options)]

    def _misunderstood(self, conv: Conversation) -> list[Action]:
        conv.misunderstood += 1
        voice = conv.channel == "voice"
        if conv.misunderstood < self.rules.max_misunderstood:
            return [Ask(self.t.rephrase_voice if voice else self.t.rephrase_chat, "rephrase")]
        menu = self._menu_options()
        if voice and menu and not conv.menu_shown:
            conv.menu_shown = True
            conv.pending = Pending("menu", menu)
            choices = ", ".join(self.t.menu_choice.format(digit=o.digit, label=o.label) for o in menu)
            return [Ask(self.t.menu_voice.format(choices=choices), "menu", menu)]
        conv.misunderstood = 0
        return [Say(self.t.give_up_voice if voice else self.t.give_up_chat),
                *self._transfer(conv, self.kb.human_for(conv.tenant), "not_understood", announce=False)]

    def _menu_options(self) -> tuple[Option, ...]:
        items = [m for m in self.rules.menu if m.article in self.kb.by_id]
        return tuple(Option(m.article, m.label, str(i)) for i, m in enumerate(items, start=1))

    def _is_open(self, conv: Conversation, department: str) -> bool | None:
        if department == HUMAN and conv.human_open is not None:
            return conv.human_open
        schedule = self.kb.directory.schedule(department) if self.kb.directory else None
        return schedule.is_open(self._now(conv)) if schedule else None

    def _now(self, conv: Conversation) -> dt.datetime:
        return conv.clock or self.now()

    def _transfer(self, conv: Conversation, department: str, reason: str, *,
                  announce: bool = True) -> list[Action]:
        directory = self.kb.directory
        dept = directory.departments.get(department) if directory else None
        if dept is None:  # a knowledge base without config: hand the id to the dialplan as is
            return [Transfer(department, department, department, reason)]
        schedule = directory.schedule(department)
        is_open = self._is_open(conv, department)
        hours = schedule.describe() if schedule else ""
        actions: list[Action] = []
        if conv.channel == "voice":
            if is_open is False:
                return self._unavailable(conv, department, self.t.closed)
            if announce:
                actions.append(Say(self.t.transferring.format(name=dept.name)))
        conv.outcome = "transferred"  # the chat gives the contact details: a referral to staff too
        return actions + [Transfer(department, dept.target, dept.name, reason, is_open, hours,
                                   dept.phone, dept.link)]

    def _unavailable(self, conv: Conversation, department: str, template: str) -> list[Action]:
        """Nobody can take the call (closed, or no agent): the hours, then the SMS offer."""
        directory = self.kb.directory
        dept = directory.departments.get(department) if directory else None
        if dept is None:
            return [Say(self.t.give_up_voice), *self._anything_else(conv)]
        schedule = directory.schedule(department)
        if conv.outcome in ("open", "transferred"):  # the transfer did not happen
            conv.outcome = "unresolved"
        say = Say(template.format(name=dept.name, hours=schedule.describe() if schedule else ""))
        human = self.kb.by_id.get("medarbejder") if department == HUMAN else None
        sms = human.sms if human and human.sms else f"{dept.name}: {dept.phone} {dept.link}".strip()
        if conv.channel == "voice" and dept.link:
            return [say, *self._offer_sms(conv, department, sms, dept.link)]
        return [say, *self._anything_else(conv)]

    def _anything_else(self, conv: Conversation) -> list[Action]:
        conv.pending = Pending("anything_else", self._yes_no())
        return [Ask(self.t.anything_else, "anything_else", conv.pending.options)]

    def _finish(self, conv: Conversation) -> list[Action]:
        """The caller is done: the survey after a resolved conversation, else goodbye."""
        if self.rules.survey and conv.outcome == "resolved" and conv.survey is None:
            options = tuple(Option(str(n), str(n), str(n)) for n in range(1, 6))
            conv.pending = Pending("survey", options)
            text = self.t.survey_voice if conv.channel == "voice" else self.t.survey_chat
            return [Ask(text, "survey", options)]
        return self._end(conv, "goodbye")

    def _end(self, conv: Conversation, reason: str, *, say: bool = True, text: str = "") -> list[Action]:
        conv.ended = True
        conv.pending = None
        if conv.outcome == "open":
            conv.outcome = "abandoned"
        return ([Say(text or self.t.goodbye)] if say else []) + [End(reason)]

    def known_lines(self) -> list[str]:
        """Every line the phone may hear that is not built from what a caller said: fixed texts,
        article answers and follow-ups, and the lines made from departments, hours and the menu.
        The phone synthesizes them all before a call (or a knowledge reload) needs them."""
        t, kb = self.t, self.kb
        lines = [v for v in vars(t).values() if isinstance(v, str) and "{" not in v]
        for article in kb.articles:
            lines += [article.answer_voice, *article.followups.values(), t.no_followup.format(link=article.link)]
            if article.action.kind != "answer":
                lines.append(self._confirm_topic(Conversation("voice"), article)[0].text)
            if article.link:
                lines.append(t.no_sms.format(link=spoken_address(article.link)))
        directory = kb.directory
        for dept_id, dept in (directory.departments.items() if directory else ()):
            schedule = directory.schedule(dept_id)
            hours = schedule.describe() if schedule else ""
            lines += [t.transferring.format(name=dept.name), t.offer_transfer.format(name=dept.name)]
            if hours:
                lines += [t.closed.format(name=dept.name, hours=hours), t.no_agents.format(name=dept.name, hours=hours)]
            if dept.link:
                lines.append(t.no_sms.format(link=spoken_address(dept.link)))
            if schedule is not None and dept_id == HUMAN:
                lines += [t.greeting_voice_closed.format(opens=o) for o in _opening_phrases(schedule)]
        for tenant in kb.tenants.values():
            lines += [tenant.greeting.voice]
            schedule = directory.schedule(tenant.human) if directory else None
            if tenant.greeting.voice_closed and schedule is not None:
                lines += [tenant.greeting.voice_closed.format(opens=o) for o in _opening_phrases(schedule)]
        menu = self._misunderstood(Conversation("voice", misunderstood=self.rules.max_misunderstood))
        lines += [a.text for a in menu if isinstance(a, (Say, Ask))]
        return list(dict.fromkeys(line for line in lines if line.strip()))

    def _yes_no(self) -> tuple[Option, ...]:
        return (Option("yes", self.t.yes, "1"), Option("no", self.t.no, "2"))


def _opening_phrases(schedule) -> list[str]:
    """Every 'i dag/i morgen/på <dag> klokken H' the closed-hours greeting can say."""
    from voicebot.knowledge.hours import DANISH_DAYS, DAYS, _say_time, parse_interval

    starts = {_say_time(parse_interval(i)[0]) for day in DAYS for i in getattr(schedule, day)}
    days = ["i dag", "i morgen", *(f"på {d}" for d in DANISH_DAYS)]
    return [f"{d} klokken {h}" for d in days for h in sorted(starts)] + ["senere"]


def spoken_address(link: str) -> str:
    """A web address as it is read aloud: 'https://www.kk.dk/borgerservice' → 'kk punktum dk
    skråstreg borgerservice'."""
    bare = re.sub(r"^https?://(www\.)?", "", link).rstrip("/")
    return bare.replace(".", " punktum ").replace("/", " skråstreg ")
