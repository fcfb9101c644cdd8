"""Fixtures shared by the chat tests: the chat service on the real knowledge, behind real HTTP."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voicebot.chat import add_chat_routes, build_chat_service
from voicebot.config import load_settings


@pytest.fixture(scope="module")
def service():
    return build_chat_service(load_settings())


@pytest.fixture
async def client(service):
    app = web.Application()
    add_chat_routes(app, service)
    async with TestClient(TestServer(app)) as c:
        yield c
