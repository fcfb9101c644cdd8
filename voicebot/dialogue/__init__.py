"""The channel-agnostic dialogue: ``events`` (vocabulary) and ``engine`` (the state machine)."""

from voicebot.dialogue.engine import Conversation, DialogueEngine, Pending
from voicebot.dialogue.events import (Action, Ask, ChatMessage, Digit, End, Event, Hangup, OfferSms,
                                      Option, Say, SendSms, Silence, Transfer, Utterance)
from voicebot.dialogue.texts import DialogueTexts

__all__ = ["Action", "Ask", "ChatMessage", "Conversation", "DialogueEngine", "DialogueTexts", "Digit",
           "End", "Event", "Hangup", "OfferSms", "Option", "Pending", "Say", "SendSms", "Silence",
           "Transfer", "Utterance"]
