"""Cross-origin rules for browsers: an allow-list, preflights, and CSRF refusal.

A page on another origin may call Mirage only if its origin is listed in
``allowed_origins`` (``"*"`` allows any). A page served by Mirage itself (the
``Origin`` names the ``Host`` it talks to) is always allowed. Requests without an
``Origin`` header are not from a browser page and pass (auth covers those).

A cross-origin *mutating* request from an unlisted origin is refused with 403
before any handler runs: without that, any web page the user visits could
POST a portrait or an offer to a Mirage on localhost (a "simple" request
needs no preflight). Reads from an unlisted origin are answered without CORS
headers, so the browser keeps the body from the page.

DNS rebinding: a page on ``evil.example`` whose name is re-pointed at 127.0.0.1
is "same-origin" with a Mirage on localhost. So a server bound to loopback
without auth answers only requests whose ``Host`` is a loopback name (or the
host of a listed origin); anything else gets 403 ``HostNotAllowed``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import MutableMapping
from urllib.parse import urlsplit

from aiohttp import web

from mirage.config import Settings
from mirage.security.common import Handler, Middleware, refuse
from mirage.security.policy import SAFE_METHODS

ALLOW_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, If-Match"
EXPOSE_HEADERS = "Location, ETag, Link, Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE_S = 600


DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(origin: str, host: str | None) -> bool:
    """The page's origin names the host (and port) this request was sent to.

    A ``Host`` without a port (a proxy's ``$host``; TLS ended in front) matches
    the origin's default port, whichever the scheme.
    """
    if not host:
        return False
    try:
        page = urlsplit(origin)
        sent = urlsplit(f"//{host}")
        page_port = page.port or DEFAULT_PORTS.get(page.scheme)
        sent_port = sent.port
    except ValueError:
        return False
    if not page.hostname or page.hostname != sent.hostname:
        return False
    if sent_port is None:
        return page_port in DEFAULT_PORTS.values()
    return page_port == sent_port


def _hostname(netloc: str) -> str:
    """``"[::1]:7860"`` → ``"::1"``, ``"Example.com:80"`` → ``"example.com"``."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


def is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def middleware(settings: Settings) -> Middleware:
    listed = frozenset(o.strip().rstrip("/").lower() for o in settings.allowed_origins)
    any_origin = "*" in listed
    guard_host = is_loopback_name(settings.host) and not (settings.token or settings.jwt_secret)
    listed_hosts = frozenset(_hostname(urlsplit(o).netloc) for o in listed if o != "*")

    def listed_origin(origin: str) -> bool:
        return any_origin or origin.lower() in listed

    def allow(headers: MutableMapping[str, str], origin: str) -> None:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        headers["Vary"] = "Origin"

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if guard_host and not any_origin:
            name = _hostname(request.host)
            if not (is_loopback_name(name) or name in listed_hosts):
                return refuse(
                    403,
                    "this server answers only to localhost; set MIRAGE_TOKEN, or list the "
                    "page's origin in MIRAGE_ALLOWED_ORIGINS, to serve it under another name",
                    "HostNotAllowed",
                )
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        cross = listed_origin(origin)
        ok = cross or same_origin(origin, request.host)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not ok:
                return refuse(403, "this origin may not call Mirage", "OriginNotAllowed")
            headers = {
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            }
            allow(headers, origin)
            return web.Response(status=204, headers=headers)
        if not ok and request.method not in SAFE_METHODS:
            return refuse(403, "this origin may not call Mirage", "OriginNotAllowed")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own 404/405/413 …
            if cross:
                allow(exc.headers, origin)
            raise
        if cross and not response.prepared:
            allow(response.headers, origin)
        return response

    return cors
