"""Every number of the report, defined once. The JSON carries these definitions and the HTML
prints them, so the page and the data never disagree about what a KPI means.

Conventions shared by all KPIs:

* A conversation belongs to the month in which it *started*, in local time (Europe/Copenhagen).
* Test calls (records with a test reference, ``ref``, set by ``voicebot call``) are left out
  unless ``--include-test-calls`` is given.
* "Ended" conversations have an outcome; a conversation still live has none and counts only in
  ``conversations``. Rates use ended conversations as denominator unless stated otherwise.
* A rate with a zero denominator is ``null``. Rates are fractions (0.25 = 25 %), rounded to 4
  decimals; the month-over-month change of a rate is a difference of fractions (0.05 = 5 points).
"""

from __future__ import annotations

import dataclasses

HUMAN_TARGET = "human-queue"  # the dialplan target of the human queue (departments.borgerservice.target)


@dataclasses.dataclass(frozen=True)
class Kpi:
    key: str
    name: str            # English, for the headings
    name_da: str         # the business case's Danish name
    kind: str            # count | rate | mean
    definition: str
    headline: bool = False  # one of the business case's "Tabel 3" KPIs

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


KPIS: list[Kpi] = [
    Kpi("conversations", "Conversations", "Samtaler", "count",
        "Conversations started in the month (local time), including any still live."),
    Kpi("ended", "Ended conversations", "Afsluttede samtaler", "count",
        "Conversations with an outcome (resolved, transferred:<target>, abandoned, failed, unresolved). "
        "The denominator of the rates below."),
    Kpi("resolved", "Resolved without staff", "Løst uden medarbejder", "count",
        "Ended conversations with outcome 'resolved': the citizen got the answer from the bot and "
        "was not sent on to a person."),
    Kpi("automation_rate", "Resolved without staff, rate", "Samtaler løst uden medarbejder", "rate",
        "resolved / ended.", headline=True),
    Kpi("immediate", "Immediate resolution", "Straksafklaring", "count",
        "Resolved conversations in which the bot's first reaction to the citizen (the first turn "
        "after the greeting, i.e. the lowest-numbered turn whose decision is not 'start') was an "
        "answer ('answer'): no rephrase request, clarifying question, confirmation, keypad menu or "
        "transfer came before the first answer."),
    Kpi("immediate_rate", "Immediate resolution, rate", "Straksafklaring", "rate",
        "immediate / ended.", headline=True),
    Kpi("transferred", "Transfers", "Viderestillinger", "count",
        "Ended conversations whose outcome starts with 'transferred:' (a transfer that happened; on "
        "the chat, a referral with the department's contact details). One per conversation."),
    Kpi("transfer_rate", "Transfers, rate", "Viderestillinger", "rate",
        "transferred / ended.", headline=True),
    Kpi("transferred_human", "Transfers to the human queue", "Viderestillet til Borgerservice", "count",
        f"Transfers to the human queue on the main number (outcome 'transferred:{HUMAN_TARGET}')."),
    Kpi("transferred_department", "Transfers to a department", "Viderestillet til afdeling", "count",
        "Transfers to any other target (outcome 'transferred:<department>')."),
    Kpi("reached_staff", "Reached staff", "Henvendelser der stadig når en medarbejder", "count",
        "Transfers (human queue or a department) plus phone calls that ended 'failed': a failing "
        "call is handed back to the human queue (fail-open), so it reaches staff too. Derived from "
        "outcomes (sent towards staff); calls_by_day's 'answered_by_staff' counts the calls an agent "
        "actually answered."),
    Kpi("reached_staff_rate", "Reached staff, rate", "Henvendelser der stadig når en medarbejder", "rate",
        "reached_staff / ended.", headline=True),
    Kpi("abandoned", "Abandoned", "Afbrudt", "count",
        "Ended conversations with outcome 'abandoned': the citizen left before an answer or a transfer."),
    Kpi("failed", "Failed", "Fejlet", "count",
        "Ended conversations with outcome 'failed' (a fault in the bot; phone calls go to the human queue)."),
    Kpi("unresolved", "Other outcomes", "Øvrige", "count",
        "Ended conversations with any other outcome, e.g. 'unresolved' (the department was closed or "
        "had no agents: the citizen got opening hours or an SMS instead)."),
    Kpi("survey_responses", "Survey answers", "Besvarede tilfredshedsmålinger", "count",
        "Conversations with a 1-5 survey answer. The survey is asked only after a resolved conversation."),
    Kpi("survey_response_rate", "Survey answer rate", "Svarprocent", "rate",
        "survey_responses / resolved."),
    Kpi("survey_mean", "Satisfaction (mean, 1-5)", "Tilfredshed", "mean",
        "Mean of the 1-5 survey answers (5 = very satisfied), rounded to 4 decimals; null without answers.",
        headline=True),
]

BY_KEY = {k.key: k for k in KPIS}

# The report's other sections, defined the same way.
SECTIONS: dict[str, str] = {
    "transfers_by_department": "Transfers (outcome 'transferred:<target>') counted per target and channel; "
                               "'department' is the configured department whose dialplan target that is.",
    "top_intents": "Conversations whose list of answered topics (the record's intents) contains the intent, "
                   "per channel; a conversation counts once per intent. The most frequent first.",
    "top_unrecognized": "Turns the bot did not understand: no intent (null or 'none') and decision 'rephrase' "
                        "or 'menu' (the bot asked again or offered the keypad menu), excluding events such as "
                        "'(stilhed)' (text in parentheses) and key presses ('[5]'); grouped by the stored, "
                        "already redacted text. "
                        "A turn belongs to its conversation's month.",
    "volume": "Conversations by weekday (Monday first) and hour of their start, in local time "
              "(Europe/Copenhagen).",
    "calls_by_day": "Phone calls per day of the month (local time; a call belongs to the day it started), "
                    "with the month's total: 'calls' (voice conversations), 'transferred' (their outcome "
                    "starts with 'transferred:') and 'answered_by_staff' (a queue agent answered the call after "
                    "the bot handed it back: Asterisk's AMI AgentConnect event named the conversation's record, "
                    "which got staff_reached_at; a transfer nobody answered, or a department reached outside "
                    "Asterisk's queues, does not count). No phone number is read or stored for this.",
    "survey": "Survey answers 1-5 per channel: how many conversations got each answer.",
    "change": "This month's value minus the previous month's (same tenant and filters); null when either is null.",
}

CHANNELS = ("voice", "chat")
SCOPES = (*CHANNELS, "total")
