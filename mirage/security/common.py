"""What the security middlewares share: the handler type and the refusal shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refuse(
    status: int, error: str, kind: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The same JSON body every other error has (``{"error", "kind"}``), built here
    because these refusals happen outside the handlers' error mapping."""
    return web.json_response({"error": error, "kind": kind}, status=status, headers=headers)


__all__ = ["Handler", "Middleware", "refuse"]
