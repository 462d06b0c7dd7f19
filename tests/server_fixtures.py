"""Start a real Mirage app on a loopback port for in-process peer tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from mirage.app import create_app
from mirage.config import Settings

LOOPBACK = Settings(
    ice_hosts=("127.0.0.1",),
    face="passthrough",
    voice="passthrough",
    media_timeout_s=3.0,
    disconnected_grace_s=1.0,
    # Tests open many sessions from one address; the limiter has its own tests
    # (tests/test_security.py), which turn it back on.
    offer_rate=0.0,
    # The fault-injection backends (hang, slow, failing ...) are for tests only.
    test_backends=True,
)

StartServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start_server(aiohttp_server: Any) -> AsyncIterator[StartServer]:
    async def start(**changes: Any) -> TestServer:
        app = create_app(LOOPBACK.replace(**changes))
        server: TestServer = await aiohttp_server(app, host="127.0.0.1")
        return server

    yield start


def base_url(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")
