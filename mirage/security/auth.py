"""Bearer auth: a shared token (``MIRAGE_TOKEN``) and/or HS256 JWTs (``MIRAGE_JWT_SECRET``).

When either is configured, every request that creates, changes or reads a session
(any POST/PATCH/PUT/DELETE, and each GET whose route is declared with ``auth``:
``mirage.security.policy``) needs ``Authorization: Bearer …``. The page,
``/health``, ``/config`` and ``/metrics`` stay open so a browser can load and learn
that a token is needed. A refusal
never says why (missing, wrong, expired, bad signature all read the same), so
it teaches an attacker nothing.

JWTs are verified with the standard library: only ``alg: HS256`` is accepted
(never ``none``), ``exp`` is required, ``nbf`` is honoured.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mirage.config import Settings
from mirage.security.common import Handler, Middleware, refuse
from mirage.security.policy import policy_of

MAX_TOKEN_CHARS = 4096  # nothing we issue is longer; refuse before hashing junk
LEEWAY_S = 5.0  # clock skew tolerated on exp/nbf


@dataclass(frozen=True)
class Verifier:
    token: str | None = None
    jwt_secret: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.jwt_secret)

    def check(self, authorization: str | None, now: float | None = None) -> bool:
        """True when the ``Authorization`` header carries an acceptable credential."""
        if not self.enabled:
            return True
        credential = bearer(authorization)
        if credential is None or len(credential) > MAX_TOKEN_CHARS:
            return False
        if self.token and hmac.compare_digest(credential.encode(), self.token.encode()):
            return True
        if self.jwt_secret:
            claims = verify_jwt(credential, self.jwt_secret, time.time() if now is None else now)
            return claims is not None
        return False


def bearer(authorization: str | None) -> str | None:
    """``"Bearer abc"`` → ``"abc"``; anything else → None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def verify_jwt(token: str, secret: str, now: float) -> dict[str, Any] | None:
    """The claims of a valid, unexpired HS256 JWT signed with ``secret``; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    head_b64, body_b64, sig_b64 = parts
    try:
        header = json.loads(_b64url_decode(head_b64))
        signature = _b64url_decode(sig_b64)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return None
    expected = hmac.new(secret.encode(), f"{head_b64}.{body_b64}".encode(), hashlib.sha256)
    if not hmac.compare_digest(signature, expected.digest()):
        return None
    try:
        claims = json.loads(_b64url_decode(body_b64))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    exp, nbf = _number(claims.get("exp")), _number(claims.get("nbf", 0))
    if exp is None or nbf is None:
        return None
    if now > exp + LEEWAY_S or now + LEEWAY_S < nbf:
        return None
    return claims


def _number(value: Any) -> float | None:
    """A finite JSON number (not a bool); None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def issue_jwt(secret: str, ttl_s: float, subject: str = "mirage", now: float | None = None) -> str:
    """An HS256 JWT valid for ``ttl_s`` (for ``mirage token`` and tests)."""
    issued = int(time.time() if now is None else now)
    header = _b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url_encode(
        json.dumps({"sub": subject, "iat": issued, "exp": issued + int(ttl_s)}).encode()
    )
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url_encode(sig)}"


def needs_auth(request: web.Request) -> bool:
    """The matched route's declared policy (a mutating route always needs auth)."""
    return policy_of(request).auth


def middleware(settings: Settings) -> Middleware:
    verifier = Verifier(settings.token, settings.jwt_secret)

    @web.middleware
    async def require_bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        if needs_auth(request) and not verifier.check(request.headers.get("Authorization")):
            return refuse(
                401, "unauthorized", "Unauthorized", headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    return require_bearer
