"""The fixed things the dialogue says (Danish), apart from the knowledge articles.

One dataclass so an operator can override any of them under ``dialogue:`` in config.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class DialogueTexts:
    greeting_chat: str = ("Hej! Jeg er Borgerservice' digitale assistent. Skriv dit spørgsmål, "
                          "for eksempel 'Jeg har mistet mit pas'.")
    rephrase_voice: str = ("Det forstod jeg desværre ikke. Prøv at sige det med andre ord, for eksempel "
                           "mistet pas, flytning eller sundhedskort.")
    rephrase_chat: str = ("Det er jeg desværre ikke sikker på, at jeg kan hjælpe med. Prøv at skrive det "
                          "med andre ord, for eksempel 'Jeg skal forny mit kørekort'.")
    give_up_chat: str = "Jeg kan desværre ikke svare på det. En medarbejder kan hjælpe dig."
    give_up_voice: str = "Jeg kan desværre ikke hjælpe med det. Jeg stiller dig videre til en medarbejder."
    clarify: str = "Mener du {a} eller {b}?"
    clarify_voice_keys: str = " Tryk 1 for {a} eller 2 for {b}."
    offer_transfer: str = "Vil du stilles videre til {name}?"
    offer_transfer_chat: str = "Vil du have kontaktoplysninger til {name}?"
    offer_sms: str = "Vil du have linket på sms? Sig ja, eller tryk 1."
    sms_sent: str = "Du får en sms om lidt."
    anything_else: str = "Er der andet, jeg kan hjælpe med?"
    okay: str = "Okay."
    goodbye: str = "Tak for henvendelsen. Hav en god dag."
    still_there: str = "Er du der stadig? Fortæl mig, hvad du gerne vil have hjælp til."
    transferring: str = "Et øjeblik, jeg stiller dig videre til {name}."
    closed: str = "{name} har telefonåbent {hours}. Lige nu er der lukket."
    contact_chat: str = "Du kan kontakte {name}{phone}{hours}."
    no_followup: str = "Det kan jeg ikke svare præcist på her. Du kan læse mere på {link}"
    yes: str = "Ja"
    no: str = "Nej"
