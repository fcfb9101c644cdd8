"""The fixed things the dialogue says (Danish), apart from the knowledge articles, and the
conversation's limits. One place for both channels: the telephony and chat layers keep no copies.

Operators override any text under ``dialogue:`` and any limit or the keypad menu under
``conversation:`` in config.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class DialogueTexts:
    greeting_voice: str = ("Velkommen til Københavns Kommune, Borgerservice. Du taler med en digital assistent. "
                           "Fortæl med dine egne ord, hvad du ringer om. "
                           "Tryk 0 for at tale med en medarbejder.")
    greeting_voice_closed: str = ("Velkommen til Københavns Kommune, Borgerservice. Du taler med en digital "
                                  "assistent. Vores medarbejdere har telefonen lukket lige nu og er der igen "
                                  "{opens}, men jeg kan hjælpe med meget. Fortæl med dine egne ord, hvad du "
                                  "ringer om.")
    greeting_chat: str = ("Hej! Jeg er Borgerservice' digitale assistent. Skriv dit spørgsmål, "
                          "for eksempel 'Jeg har mistet mit pas'.")
    rephrase_voice: str = ("Det forstod jeg desværre ikke. Prøv at sige det med andre ord, for eksempel "
                           "mistet pas, flytning eller sundhedskort.")
    rephrase_chat: str = ("Det er jeg desværre ikke sikker på, at jeg kan hjælpe med. Prøv at skrive det "
                          "med andre ord, for eksempel 'Jeg skal forny mit kørekort'.")
    unknown_key: str = "Den tast kan jeg ikke bruge her. Sig, hvad du ringer om, eller tryk 0 for en medarbejder."
    give_up_chat: str = "Jeg kan desværre ikke svare på det. En medarbejder kan hjælpe dig."
    give_up_voice: str = "Jeg kan desværre ikke hjælpe med det. Jeg stiller dig videre til en medarbejder."
    menu_voice: str = "Jeg forstod det desværre ikke. Vælg et emne med tasterne: {choices}. Eller tryk 0 for en medarbejder."
    menu_choice: str = "tryk {digit} for {label}"
    clarify: str = "Mener du {a} eller {b}?"
    clarify_voice_keys: str = " Tryk 1 for {a} eller 2 for {b}."
    confirm_topic: str = "Handler det om {topic}? Sig ja eller nej, eller tryk 1 for ja og 2 for nej."
    offer_transfer: str = "Vil du stilles videre til {name}?"
    offer_transfer_chat: str = "Vil du have kontaktoplysninger til {name}?"
    offer_sms: str = "Vil du have linket på sms? Sig ja, eller tryk 1."
    sms_sent: str = "Du får en sms om lidt."
    no_sms: str = "Jeg kan ikke sende en sms til det nummer, du ringer fra. Du kan læse mere på {link}."
    anything_else: str = "Er der andet, jeg kan hjælpe med?"
    okay: str = "Okay."
    goodbye: str = "Tak for henvendelsen. Hav en god dag."
    survey_voice: str = "Hvor tilfreds var du med hjælpen? Tryk eller sig et tal fra 1 til 5."
    survey_chat: str = "Hvor tilfreds var du med hjælpen? Vælg et tal fra 1 (meget utilfreds) til 5 (meget tilfreds)."
    survey_thanks: str = "Tak for din vurdering. Hav en god dag."
    still_there: str = "Er du der stadig? Fortæl mig, hvad du gerne vil have hjælp til."
    nothing_to_repeat: str = "Jeg har ikke sagt noget, jeg kan gentage. Fortæl mig, hvad du ringer om."
    transferring: str = "Et øjeblik, jeg stiller dig videre til {name}."
    closed: str = "{name} har telefontid {hours}. Lige nu er der lukket."
    no_agents: str = "Der er desværre ingen medarbejdere ledige lige nu. {name} har telefontid {hours}."
    technical_error: str = "Der er desværre sket en teknisk fejl. Jeg stiller dig videre til en medarbejder."
    holding: str = "Et øjeblik."  # the phone says it when recognizing the caller's words is slow (load)
    contact_chat: str = "Du kan kontakte {name}{phone}{hours}."
    no_followup: str = "Det kan jeg ikke svare præcist på her. Du kan læse mere på {link}"
    yes: str = "Ja"
    no: str = "Nej"


@dataclasses.dataclass
class MenuItem:
    """One keypad menu entry: the article it plays and the short label the caller hears."""

    article: str
    label: str


@dataclasses.dataclass
class ConversationRules:
    """``conversation:``: the limits of a conversation and the keypad menu of main topics."""

    max_misunderstood: int = 2      # misses in a row before the keypad menu (then a human)
    max_silences: int = 3           # silences in a row: two reprompts, then goodbye
    low_asr_confidence: float = 0.3  # below this, a transcript is not trusted
    confirm_transfer_below: float = 0.6  # a transfer article matched below this is confirmed first
    survey: bool = True             # ask for a 1-5 score at the end of a resolved conversation
    menu: list[MenuItem] = dataclasses.field(default_factory=list)

    def validate(self) -> None:
        if self.max_misunderstood < 1 or self.max_silences < 1:
            raise ValueError("max_misunderstood and max_silences: must be at least 1")
        if not 0 <= self.low_asr_confidence < 1:
            raise ValueError("low_asr_confidence: must be in [0, 1)")
        if len(self.menu) > 9:
            raise ValueError("menu: at most 9 entries (keys 1-9; 0 is the human route)")
