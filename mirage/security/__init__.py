"""The server's outer wall: origin checks, auth, rate limits, body-size limits, TURN.

Everything here is an aiohttp middleware (or pure code such as TURN credentials),
so routes added anywhere in the app are covered without knowing about it.
``*_middlewares`` return them in the order they must wrap the app. Nothing here
imports the server state or ``mirage.webrtc`` (``tests/test_layers.py`` checks).
"""

from __future__ import annotations

from mirage.config import Settings
from mirage.security import auth, cors, limits, ratelimit
from mirage.security.common import Middleware


def outer_middlewares(settings: Settings) -> list[Middleware]:
    """Those that must see every response, errors included (CORS headers on a 401 or 500)."""
    return [cors.middleware(settings)]


def inner_middlewares(settings: Settings) -> list[Middleware]:
    """Checks that refuse a request before any handler reads its body."""
    return [auth.middleware(settings), ratelimit.middleware(settings), limits.middleware(settings)]


__all__ = ["inner_middlewares", "outer_middlewares"]
