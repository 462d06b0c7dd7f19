"""Per-client rate limit on the requests that cost the server most.

Each client address gets a token bucket per limited route (declared with
``rate_limited`` where the route is added: ``mirage.security.policy``): ``offer_rate``
requests per minute on average, with bursts up to that many. An empty bucket
answers 429 with ``Retry-After`` (seconds until the next token). Memory is
bounded: at most ``MAX_CLIENTS`` buckets are kept, least recently seen first
out (a forgotten client simply starts with a full bucket again).

The client is ``request.remote``. ``X-Forwarded-For`` is believed only when the
direct peer is one of ``trusted_proxies`` (e.g. the nginx in ``deploy/``):
then the client is the right-most address in it that is not a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from mirage.config import Settings
from mirage.security.common import Handler, Middleware, refuse
from mirage.security.policy import policy_of

MAX_CLIENTS = 10_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets keyed by client; ``take`` returns 0 when allowed, else seconds to wait."""

    def __init__(
        self,
        per_minute: float,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        now = self.clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        self._buckets[key] = bucket  # most recently seen goes last
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``("10.0.0.0/8", "127.0.0.1")`` → networks; a bad entry is a start-up error."""
    try:
        return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)
    except ValueError as exc:
        raise ValueError(f"trusted_proxies: {exc}") from None


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(
    remote: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The address a request really comes from (see the module docstring)."""
    peer = remote or "unknown"
    if not trusted or not forwarded_for or not _in(peer, trusted):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not hop:
            continue
        if not _in(hop, trusted):
            return hop
    return peer


def middleware(settings: Settings) -> Middleware:
    trusted = parse_networks(settings.trusted_proxies)
    limiter = RateLimiter(settings.offer_rate) if settings.offer_rate > 0 else None

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if limiter is not None and policy_of(request).rate_limited:
            client = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
            route = request.match_info.route
            where = route.resource.canonical if route.resource is not None else request.path
            wait = limiter.take(f"{client} {request.method} {where}")
            if wait > 0:
                retry = max(1, math.ceil(wait))
                return refuse(
                    429,
                    f"too many requests to {request.path}; retry in {retry} s",
                    "RateLimited",
                    headers={"Retry-After": str(retry)},
                )
        return await handler(request)

    return rate_limit
