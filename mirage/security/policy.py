"""Each route's policy (auth, rate limit, body cap), declared where the route is added.

``add_route`` registers a route together with its ``RoutePolicy``; the auth,
rate-limit and body-limit middlewares read the policy of the route the request
matched (``policy_of``), so a route and its rules live on one line of the route
table (``mirage.app.create_app``, ``mirage.webrtc.whip.add_routes``).

A mutating route (POST, PATCH, PUT, DELETE) cannot be declared open: with auth
configured, every one needs a bearer. A matched route that was added without a
policy is treated as the strictest one (auth, small body); a request that matches
no route (404/405) needs auth unless its method is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from mirage.config import Settings
from mirage.security.common import Handler

#: Methods that never change anything (OPTIONS preflights are answered by the CORS layer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around an uploaded image


@dataclass(frozen=True)
class RoutePolicy:
    """What the wall asks of one route."""

    auth: bool = True  # a bearer is needed when MIRAGE_TOKEN / MIRAGE_JWT_SECRET is set
    rate_limited: bool = False  # counts against ``offer_rate`` per client (costly routes)
    body: Literal["small", "image"] = "small"  # cap: max_offer_bytes, or an image upload

    def body_limit(self, settings: Settings) -> int:
        if self.body == "image":
            return settings.max_image_bytes + MULTIPART_SLACK
        return settings.max_offer_bytes


OPEN = RoutePolicy(auth=False)  # the page, probes, what a page needs before it has a token
PROTECTED = RoutePolicy()  # reveals or changes a session, the portrait or credentials
COSTLY = RoutePolicy(rate_limited=True)  # makes a session: models, a peer connection
UPLOAD = RoutePolicy(rate_limited=True, body="image")  # decodes an uploaded portrait

#: Every route's policy, keyed by the route object aiohttp matched.
ROUTE_POLICIES = web.AppKey("mirage_route_policies", dict[AbstractRoute, RoutePolicy])


def add_route(
    app: web.Application, method: str, path: str, handler: Handler, policy: RoutePolicy
) -> AbstractRoute:
    """``app.router.add_route`` with the route's policy (a GET answers HEAD too)."""
    if method not in SAFE_METHODS and not policy.auth:
        raise ValueError(f"{method} {path}: a route that changes state cannot be open")
    if method == "GET":
        route = app.router.add_get(path, handler)
    else:
        route = app.router.add_route(method, path, handler)
    _declare(app, route, policy)
    return route


def add_static(app: web.Application, prefix: str, path: str) -> None:
    """Static files, open to anyone (the page's scripts and styles)."""
    resource = app.router.add_static(prefix, path)
    policies = app.setdefault(ROUTE_POLICIES, {})
    for route in resource:
        policies[route] = OPEN


def _declare(app: web.Application, route: AbstractRoute, policy: RoutePolicy) -> None:
    policies = app.setdefault(ROUTE_POLICIES, {})
    for sibling in route.resource or ():
        # add_get's HEAD route is the GET's twin: same rules.
        if sibling is route or (route.method == "GET" and sibling.method == "HEAD"):
            policies[sibling] = policy


def policy_of(request: web.Request) -> RoutePolicy:
    """The policy of the route ``request`` matched (see the module docstring)."""
    route = request.match_info.route
    declared = request.app.get(ROUTE_POLICIES, {}).get(route)
    if declared is not None:
        return declared
    if route.resource is not None:  # a real route that was added without a policy
        return PROTECTED
    return PROTECTED if request.method not in SAFE_METHODS else OPEN


__all__ = [
    "COSTLY",
    "MULTIPART_SLACK",
    "OPEN",
    "PROTECTED",
    "ROUTE_POLICIES",
    "SAFE_METHODS",
    "UPLOAD",
    "RoutePolicy",
    "add_route",
    "add_static",
    "policy_of",
]
