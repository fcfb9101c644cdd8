"""``explain(text, engine)``: what the bot answers to a sentence in the chat, and why.

Runs the current engine on a fresh chat conversation (so the answer is exactly what a new chat
user would get) and asks the matcher for its evidence (``IntentMatcher.evidence``): the rules
that fire, the nearest examples with their scores, and the margin to the runner-up.
"""

from __future__ import annotations

import dataclasses

from voicebot.dialogue.engine import Conversation, DialogueEngine
from voicebot.dialogue.events import ChatMessage
from voicebot.nlu.matcher import NONE, MatchResult


@dataclasses.dataclass
class Explanation:
    text: str                         # as typed (or stored)
    answer: str                       # the chat reply's text
    result: MatchResult | None        # None: the engine did not ask the matcher (e.g. "medarbejder")
    reason: str                       # one Danish sentence: why this decision
    runner_up: tuple[str, float] | None
    rules: list[dict]
    examples: list[dict]
    normalized: str = ""

    def title(self, intent: str, titles: dict[str, str]) -> str:
        return "uden for emnet (none)" if intent == NONE else titles.get(intent, intent)


def explain(text: str, engine: DialogueEngine, k: int = 5) -> Explanation:
    from voicebot.chat import render  # the chat's own rendering of actions into a reply

    conv = Conversation("chat", "staff-try")
    actions = engine.handle(conv, ChatMessage(text))
    answer = render(actions)["text"]
    result = conv.last_result
    evidence = engine.matcher.evidence(text, k)
    runner_up = None
    if result is not None and len(result.ranked) > 1:
        runner_up = result.ranked[1]
    return Explanation(text=text, answer=answer, result=result, reason=_reason(result, engine),
                       runner_up=runner_up, rules=evidence["rules"], examples=evidence["examples"],
                       normalized=evidence["text"])


def _reason(result: MatchResult | None, engine: DialogueEngine) -> str:
    if result is None:
        return "Matcheren blev ikke spurgt: sætningen blev genkendt før (fx ønske om en medarbejder eller 'gentag')."
    c = engine.matcher.config
    scores = dict(result.ranked)
    if not result.ranked or result.text == "":
        return "Der var ingen ord at matche."
    top_intent, top = result.ranked[0]
    real = [(i, s) for i, s in result.ranked if i != NONE]
    best_real = real[0] if real else None
    if result.decision == "none":
        if top_intent == NONE:
            return ("De nærmeste formuleringer er uden for bottens emner ('none' scorede højest, "
                    f"{top:.2f}), så botten bad om en omformulering.")
        if best_real and best_real[1] < c.min_score:
            return (f"Bedste emne {best_real[0]} scorede {best_real[1]:.2f}, under minimum {c.min_score:.2f}, "
                    "så botten bad om en omformulering.")
        none_score = scores.get(NONE)
        gap = f"{best_real[1] - none_score:.2f}" if best_real and none_score is not None else "?"
        return (f"Bedste emne {best_real[0] if best_real else '?'} slog 'uden for emnet' med kun {gap} "
                f"(kræver {c.none_margin:.2f}), så botten bad om en omformulering.")
    if result.decision == "ask":
        return (f"De to bedste emner lå kun {result.margin:.2f} fra hinanden (under {c.ask_margin:.2f}), "
                "så botten spurgte hvilket af dem der var ment.")
    return (f"Emnet {result.intent} vandt med sikkerhed {result.confidence:.2f} og en afstand på "
            f"{result.margin:.2f} til nummer to.")
