"""The server's outer wall: origin checks, auth, rate limits, body-size limits, TURN.

Everything here is an aiohttp middleware (or one small route), so routes added
anywhere in the app are covered without knowing about it. ``middlewares`` returns
them in the order they must wrap the app; ``add_routes`` adds ``GET /ice-servers``.
"""

from __future__ import annotations

from aiohttp import web

from mirage.config import Settings
from mirage.security import auth, cors, limits, ratelimit, turn
from mirage.security.common import Middleware


def outer_middlewares(settings: Settings) -> list[Middleware]:
    """Those that must see every response, errors included (CORS headers on a 401 or 500)."""
    return [cors.middleware(settings)]


def inner_middlewares(settings: Settings) -> list[Middleware]:
    """Checks that refuse a request before any handler reads its body."""
    return [auth.middleware(settings), ratelimit.middleware(settings), limits.middleware(settings)]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ice-servers", turn.handle_ice_servers)


__all__ = ["add_routes", "inner_middlewares", "outer_middlewares"]
