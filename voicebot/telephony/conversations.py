"""The phone conversation: the channel-agnostic dialogue engine driven by one call.

``VoiceDialogue`` is the voice adapter around ``voicebot.dialogue``: it feeds the engine the call's
events (utterance with its ASR confidence, key press, silence, hang-up) and performs the engine's
actions — say (cached TTS or a recording), ask (with the keypad options and, where the engine
supports it, the question's closed set of spoken answers), offer and send an SMS, transfer
(with the queue status from AMI before a human transfer), end. Texts, limits and the goodbye rule
are the engine's; this module adds only what a phone line needs. The conversation's record is
written by one ``Recorder`` that observes every event and the actions it caused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from voicebot.dialogue import (Action, Ask, Conversation, End, Hangup, OfferSms, QueueUnavailable, Say,
                               SendSms, Silence, Transfer, Utterance)
from voicebot.privacy import danish_mobile, redact
from voicebot.store.recorder import transfer_outcome
from voicebot.telephony.call import HUMAN_TARGET, Call, CallerGone
from voicebot.telephony.speaker import Played
from voicebot.telephony.ear import VoiceConfig

if TYPE_CHECKING:
    from voicebot.dialogue.runtime import DialogueRuntime
    from voicebot.telephony.ami import AmiClient

LINE_PAUSE_S = 0.25  # between consecutive lines of one reply

log = logging.getLogger("voicebot.conversation")

YES = ("ja", "ja tak", "ja gerne", "jo")
NO = ("nej", "nej tak")
SCORE_WORDS = {"1": ("en", "et"), "2": ("to",), "3": ("tre",), "4": ("fire",), "5": ("fem",)}
CLOSED_KINDS = ("sms", "confirm_transfer", "confirm_topic", "clarify", "menu", "survey")


class VoiceDialogue:
    """One instance serves every call (``await dialogue(call)``); per-call state lives in ``_Turns``."""

    def __init__(self, runtime: DialogueRuntime, *, store: Any = None, ami: AmiClient | None = None,
                 config: VoiceConfig | None = None, salt: bytes | None = None,
                 on_sms_queued: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.store = store
        self.ami = ami
        self.config = config or VoiceConfig()
        self.salt = salt
        self.on_sms_queued = on_sms_queued  # wakes the SMS dispatcher
        if ami is not None and store is not None:
            ami.on_event("AgentConnect", self._agent_connected)

    async def _agent_connected(self, event: Any) -> None:
        """An agent answered a queue call: when it is a call the bot handed back (it carries
        ``VOICEBOT_RECORD``), its record is marked "reached staff". Several bot instances all see
        the event; the first mark wins, and a record in another instance's SQLite file is not found."""
        from voicebot.store.base import StoreError
        from voicebot.telephony.ami import record_of

        conversation_id = record_of(event)
        if conversation_id is None:
            return
        queue = str(event.get("Queue") or "") or None
        try:
            marked = await asyncio.to_thread(self.store.mark_reached_staff, conversation_id, queue)
        except StoreError as exc:
            log.error("reached-staff not recorded", extra={"conversation": conversation_id, "error": str(exc)})
            return
        if marked:
            log.info("handed-back call reached staff", extra={"conversation": conversation_id, "queue": queue})

    async def __call__(self, call: Call) -> None:
        await _Turns(self, call).run()


class _Turns:
    """The conversation on one call."""

    def __init__(self, owner: VoiceDialogue, call: Call) -> None:
        self.owner = owner
        self.call = call
        self.conv = Conversation("voice", call.id, tenant=call.tenant,
                                 can_sms=danish_mobile(call.caller) is not None,
                                 human_open=call.human_open, clock=call.clock)
        self.recorder = None
        self.answering = False  # an article answer is playing: a hang-up now means "abandoned"
        self.handed_back = False
        self.record_published = False  # VOICEBOT_RECORD is on the channel (for AMI AgentConnect)
        self.request = ""  # what the caller asked (the text the matcher read), for the agent
        self._followup: tuple[object, list[Action]] | None = None  # a turn the channel caused (no agent)

    async def run(self) -> None:
        conv, runtime = self.conv, self.owner.runtime
        outcome: str | None = None
        # the record starts with the call, but its first write must not delay the greeting
        starting = asyncio.ensure_future(asyncio.to_thread(self._new_recorder)) if self.owner.store else None
        try:
            await self._turn(None, runtime.engine.start(conv), {}, time.monotonic(), starting)
            while not conv.ended and not self.handed_back:
                event, timings = await self._next_event()
                started = time.monotonic()
                # each turn uses the knowledge in force now (a reload swaps it atomically)
                actions = await asyncio.to_thread(runtime.engine.handle, conv, event)
                timings["match_ms"] = int((time.monotonic() - started) * 1000)
                if isinstance(event, Utterance) and conv.last_result is not None:
                    self.request = event.text
                await self._turn(event, actions, timings, started)
        except CallerGone:
            outcome = "abandoned" if self.answering else None
            runtime.engine.handle(conv, Hangup())
            raise
        except Exception:
            outcome = "failed"
            raise
        finally:
            if starting is not None and self.recorder is None:
                self.recorder = await starting
            if self.recorder is not None:
                await asyncio.to_thread(self.recorder.close, conv, outcome)

    async def _turn(self, event, actions: list[Action], timings: dict[str, int], started: float,
                    starting: asyncio.Future | None = None) -> None:
        """Perform a turn's actions, then log and record it (also when the caller hangs up
        mid-way: the answer had started, and its timings are the turn's)."""
        try:
            await self.perform(actions, started, timings)
        finally:
            if event is not None:  # where a turn's time went, so a slow turn explains itself
                log.info("turn", extra={"channel": self.call.id, "event": type(event).__name__,
                                        "intent": self.conv.last_intent or "none", **timings})
            if starting is not None:
                self.recorder = await starting
            if self.recorder is not None:
                await asyncio.to_thread(self.recorder.turn, event, actions, self.conv, timings)
        await self._publish_state(actions)
        followup, self._followup = self._followup, None
        if followup is not None:
            await self._turn(*followup, {}, time.monotonic())

    def _new_recorder(self):
        from voicebot.store.recorder import Recorder

        call = self.call
        return Recorder(self.owner.store, channel="voice", tenant=call.tenant, caller=call.caller, ref=call.ref,
                        salt=self.owner.salt)

    async def _next_event(self) -> tuple[object, dict[str, int]]:
        timeout = self.owner.config.turn_timeout_s
        try:
            event, timings = await self.call.next_event(timeout=timeout)
        except TimeoutError:
            return Silence(timeout), {}
        return event, dict(timings)

    # ---- performing actions --------------------------------------------------------------------
    async def perform(self, actions: list[Action], started: float, timings: dict[str, int]) -> None:
        """Perform the engine's actions in order; ``timings["first_audio_ms"]``: the ms from
        ``started`` to the first audio sent. Consecutive lines are one playback (``_say_run``).
        A barge-in flushes what was still to be said; transfers and the end are still carried out."""
        call, first_audio = self.call, False
        call.ear.expect(None)
        flushed = False
        i = 0
        while i < len(actions):
            action = actions[i]
            if isinstance(action, (Say, Ask, OfferSms)):
                run = [action]
                while i + 1 < len(actions) and isinstance(actions[i + 1], (Say, Ask, OfferSms)):
                    i += 1
                    run.append(actions[i])
                for line in run:
                    if isinstance(line, (Ask, OfferSms)):
                        call.ear.expect(closed_choices(line))
                if not flushed:
                    played = await self._say_run(run)
                    flushed = played.interrupted
                    if not first_audio and played.seconds > 0:
                        first_audio = True
                        timings["first_audio_ms"] = int((played.started_at - started) * 1000)
                    call.check()  # a hang-up during the playback ends the turn here
            elif isinstance(action, SendSms):
                await self._send_sms(action)
            elif isinstance(action, Transfer):
                await self._transfer(action)
                break
            elif isinstance(action, End):
                await call.hangup(self.conv.outcome)
                break
            i += 1

    async def _say_run(self, run: list[Action]) -> Played:
        """Say consecutive lines as one playback with a short pause between them: the next line
        must not wait for the previous one's end to be reported (each such round trip was a gap
        of 20-50 ms in the bot's voice under load). ``answering`` tells whether the article part
        was playing when the caller hung up."""
        call = self.call
        parts, spans, at = [], [], 0
        pause = np.zeros(int(call.speaker.rate * LINE_PAUSE_S), np.int16)
        for line in run:
            text = line.prompt if isinstance(line, OfferSms) else line.text
            audio = await call.voice.speech.audio_for(text, line.recording if isinstance(line, Say) else None)
            if not len(audio):
                continue
            if parts:
                parts.append(pause)
                at += len(pause)
            parts.append(audio)
            spans.append((at, at + len(audio), isinstance(line, Say) and line.article_id is not None))
            at += len(audio)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        self.answering = any(article for _, _, article in spans)
        played = await call.play(audio)
        heard = int(played.seconds * call.speaker.rate)
        self.answering = played.interrupted and any(start <= heard < end and article
                                                    for start, end, article in spans)
        if not call.gone.is_set():  # else the hang-up is raised by perform: answering tells how
            self.answering = False
        return played

    async def _send_sms(self, action: SendSms) -> None:
        if self.owner.store is None:
            log.warning("sms not queued: no store", extra={"channel": self.call.id})
            return
        from voicebot.sms.dispatcher import queue_for_caller

        conversation_id = self.recorder.conversation_id if self.recorder is not None else None
        queued = await asyncio.to_thread(queue_for_caller, self.owner.store, conversation_id, self.call.caller,
                                         action.sms_text, action.article_id)
        if queued is not None:
            log.info("sms queued", extra={"channel": self.call.id, "about": action.article_id})
            if self.owner.on_sms_queued is not None:
                self.owner.on_sms_queued()

    async def _transfer(self, action: Transfer) -> None:
        call, conv = self.call, self.conv
        if action.target == HUMAN_TARGET and action.is_open is not False:
            info = await self._queue_status()
            if info is not None and info.logged_in == 0:
                event = QueueUnavailable(action.department)  # the engine decides what now: a turn of its own
                self._followup = (event, self.owner.runtime.engine.handle(conv, event))
                return
            from voicebot.telephony.ami import queue_sentence

            sentence = queue_sentence(info)
            if sentence:
                log.info("queue status said", extra={"channel": call.id, "sentence": sentence})
                await call.say(sentence)
        topic = (conv.last_intent or action.department).split("-")[0].upper()
        summary = redact(self.request)[:80]
        self.handed_back = True
        record = {"VOICEBOT_RECORD": self.recorder.conversation_id} if self.recorder is not None else {}
        await call.hand_back(action.target, outcome=transfer_outcome(action.target), variables={**record,
            "VOICEBOT_INTENT": conv.last_intent or action.department, "VOICEBOT_TOPIC": topic,
            "VOICEBOT_OUTCOME": "transferred", "VOICEBOT_SUMMARY": summary, "VOICEBOT_STATE": "transferred"})

    async def _queue_status(self):
        ami = self.owner.ami
        if ami is None:
            return None
        try:
            return await asyncio.wait_for(ami.queue_status(self.owner.config.human_queue,
                                                           timeout=self.owner.config.queue_status_timeout_s),
                                          self.owner.config.queue_status_timeout_s + 0.05)
        except (TimeoutError, OSError) as exc:
            log.info("queue status unavailable", extra={"channel": self.call.id, "error": type(exc).__name__})
            return None

    async def _publish_state(self, actions: list[Action]) -> None:
        """Where the call is, for ops (``core show channel``) and wallboards (AMI UserEvent)."""
        conv = self.conv
        state = ("ended" if conv.ended else "transferring" if any(isinstance(a, Transfer) for a in actions)
                 else conv.pending.kind if conv.pending else "listening")
        intent = conv.last_intent or "none"
        if not (self.call.gone.is_set() or self.handed_back):  # the channel is still ours to label
            # the record's id once, so any later hand-back (failed, shutdown, dead-man) names it too
            record = ({"VOICEBOT_RECORD": self.recorder.conversation_id}
                      if self.recorder is not None and not self.record_published else {})
            self.record_published = self.record_published or bool(record)
            await self.call.set_variables(VOICEBOT_STATE=state, VOICEBOT_INTENT=intent, **record)
        if self.owner.ami is not None:
            await self.owner.ami.user_event("VoicebotTurn", Channel=self.call.id, Tenant=self.call.tenant,
                                            State=state, Intent=intent)


def closed_choices(action: Ask | OfferSms) -> list | None:
    """The spoken answers a question allows, for recognizers that score closed sets; every set
    also allows asking for a person and for a repeat. None: free speech."""
    from voicebot.speech.asr import Choice

    if isinstance(action, OfferSms):
        options_keys: list[tuple[str, tuple[str, ...]]] = [("yes", YES), ("no", NO)]
    elif action.kind not in CLOSED_KINDS or not action.options:
        return None
    else:
        options_keys = []
        for option in action.options:
            if option.key == "yes":
                options_keys.append(("yes", YES))
            elif option.key == "no":
                options_keys.append(("no", NO))
            elif option.key in SCORE_WORDS:
                options_keys.append((option.key, SCORE_WORDS[option.key]))
            else:
                options_keys.append((option.key, (option.label.lower(),)))
    choices = [Choice(key, phrases) for key, phrases in options_keys]
    choices += [Choice("human", ("medarbejder",)), Choice("repeat", ("gentag",))]
    return choices
