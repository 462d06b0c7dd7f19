"""Request body size limits per route, refused with 413 before the body is read.

SDP and JSON bodies (``/offer``, ``/whip``, the session API …) may be at most
``max_offer_bytes``; a portrait upload (``/reference``) at most
``max_image_bytes`` plus room for a multipart envelope. A declared
``Content-Length`` over the limit is refused at once; a chunked body is cut off
by aiohttp when a handler reads past the same limit, and that refusal is given
the same JSON shape here.
"""

from __future__ import annotations

from aiohttp import web

from mirage.config import Settings
from mirage.security.common import Handler, Middleware, refuse

MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around an uploaded image
UPLOAD_PATHS = ("/reference",)


def body_limit(settings: Settings, path: str) -> int:
    if path in UPLOAD_PATHS:
        return settings.max_image_bytes + MULTIPART_SLACK
    return settings.max_offer_bytes


def middleware(settings: Settings) -> Middleware:
    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = body_limit(settings, request.path)
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
