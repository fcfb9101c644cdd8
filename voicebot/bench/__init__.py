"""Load benchmarks of a running system: many real SIP calls at once, what each caller heard, what
the bot and Asterisk cost meanwhile (``voicebot bench calls``, ``voicebot bench soak``)."""
