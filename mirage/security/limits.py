"""Request body size limits per route, refused with 413 before the body is read.

The one place a body's size is checked. Each route declares its cap with its
policy (``mirage.security.policy``): SDP and JSON bodies (``/offer``, ``/whip``,
the session API …) at most ``max_offer_bytes``, a portrait upload
(``/reference``) at most ``max_image_bytes`` plus room for a multipart envelope.
A declared ``Content-Length`` over the cap is refused at once; otherwise the cap
becomes the request's ``client_max_size``, so aiohttp cuts off a chunked body when
a handler reads past it (``request.read()``: every handler reads its body that
way), and that refusal is given the same JSON shape here.
"""

from __future__ import annotations

from aiohttp import web

from mirage.config import Settings
from mirage.security.common import Handler, Middleware, refuse
from mirage.security.policy import policy_of


def middleware(settings: Settings) -> Middleware:
    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = policy_of(request).body_limit(settings)
        declared = request.content_length
        if declared is not None and declared > limit:
            return _too_large(declared, limit)
        if request.body_exists:
            request = request.clone(client_max_size=limit)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _too_large(None, limit)

    return limit_body


def _too_large(size: int | None, limit: int) -> web.Response:
    what = f"{size} bytes" if size is not None else "over the limit"
    return refuse(413, f"the request body is {what}; the limit is {limit} bytes", "TooLarge")
