"""The web chat channel: ``build_chat_service(settings)`` and ``add_chat_routes(app, service)``."""

from voicebot.chat.api import add_chat_routes
from voicebot.chat.service import ChatService, build_chat_service, render

__all__ = ["ChatService", "add_chat_routes", "build_chat_service", "render"]
