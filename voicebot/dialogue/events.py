"""The dialogue's vocabulary: events in, actions out. Small frozen dataclasses, no I/O.

The phone channel turns audio, keypad presses and ARI events into events and actions into
speech, menus and transfers; the chat channel turns chat messages into events and actions into
JSON. Both share this one module (STYLE.md "One vocabulary").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Union

# ---------------------------------------------------------------------------------------------
# events (channel -> dialogue)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """What the caller said, as recognized by ASR, with the recognizer's confidence (0..1)."""

    text: str
    confidence: float = 1.0


@dataclasses.dataclass(frozen=True)
class ChatMessage:
    """A message typed in the web chat."""

    text: str


@dataclasses.dataclass(frozen=True)
class Digit:
    """A keypad (DTMF) press: "0"-"9", "*", "#"."""

    digit: str


@dataclasses.dataclass(frozen=True)
class Silence:
    """No speech for the configured time after the bot stopped talking."""

    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Hangup:
    """The caller hung up or the chat session was closed."""


@dataclasses.dataclass(frozen=True)
class QueueUnavailable:
    """The channel found nobody to take a transfer to the human queue (no agent logged in)."""

    department: str


Event = Union[Utterance, ChatMessage, Digit, Silence, Hangup, QueueUnavailable]

# ---------------------------------------------------------------------------------------------
# actions (dialogue -> channel)


@dataclasses.dataclass(frozen=True)
class Option:
    """One answer to a question: ``key`` is what the dialogue gets back, ``digit`` its keypad key."""

    key: str
    label: str
    digit: str


@dataclasses.dataclass(frozen=True)
class Say:
    """Say or show a text. Article answers carry the article id, link and recorded prompt."""

    text: str
    article_id: str | None = None
    link: str | None = None
    recording: Path | None = None


AskKind = Literal["clarify", "confirm_transfer", "confirm_topic", "sms", "rephrase", "anything_else",
                  "menu", "survey"]


@dataclasses.dataclass(frozen=True)
class Ask:
    """Ask a question and wait; ``options`` (if any) are also offered on the keypad."""

    text: str
    kind: AskKind
    options: tuple[Option, ...] = ()


@dataclasses.dataclass(frozen=True)
class OfferSms:
    """Offer to send a link by SMS (voice). The answer comes back as an event.

    ``article_id`` names what the link is about: an article, or a department when it is closed."""

    article_id: str
    sms_text: str
    prompt: str


@dataclasses.dataclass(frozen=True)
class SendSms:
    """The caller accepted the SMS: the channel sends ``sms_text`` to the caller's number."""

    article_id: str
    sms_text: str


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Hand over to a department or the human queue; ``target`` goes to the dialplan.

    ``is_open`` is None when the department's hours are not kept in config. ``phone``/``link``
    are what the chat shows instead of a transfer.
    """

    department: str
    target: str
    name: str
    reason: str
    is_open: bool | None = None
    hours: str = ""
    phone: str = ""
    link: str = ""


@dataclasses.dataclass(frozen=True)
class End:
    """The conversation is over (goodbye, hang-up, silence)."""

    reason: str


Action = Union[Say, Ask, OfferSms, SendSms, Transfer, End]
