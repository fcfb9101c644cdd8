"""kk-voicebot: telephony voicebot and web chatbot for Københavns Borgerservice."""

__version__ = "0.1.0"
