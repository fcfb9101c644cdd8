"""The channel-agnostic dialogue: ``events`` (vocabulary) and ``engine`` (the state machine)."""

from voicebot.dialogue.engine import Conversation, DialogueEngine, Pending
from voicebot.dialogue.events import (Action, Ask, ChatMessage, Digit, End, Event, Hangup, OfferSms,
                                      Option, QueueUnavailable, Say, SendSms, Silence, Transfer,
                                      Utterance)
from voicebot.dialogue.texts import ConversationRules, DialogueTexts, MenuItem

__all__ = ["Action", "Ask", "ChatMessage", "Conversation", "ConversationRules", "DialogueEngine",
           "DialogueTexts", "Digit", "End", "Event", "Hangup", "MenuItem", "OfferSms", "Option", "Pending",
           "QueueUnavailable", "Say", "SendSms", "Silence", "Transfer", "Utterance"]
