"""ICE servers for real networks, with time-limited TURN credentials.

The credentials follow the TURN REST API convention that coturn implements
with ``use-auth-secret`` / ``static-auth-secret``: the username is
``<expiry unix time>:<label>`` and the password is
``base64(HMAC-SHA1(secret, username))``. The TURN server recomputes the HMAC
and refuses the username once its time has passed, so a credential handed to a
page stops working after ``turn_ttl_s`` and the shared secret never leaves the
server. The page gets them from ``GET /ice-servers`` (``mirage.webrtc.ice_servers``,
behind auth when auth is on); the server's own peer connection makes its own.
Nothing here knows the server object: ``security/`` imports no ``state``/``webrtc``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from aiortc import RTCIceServer

from mirage.config import Settings
from mirage.ice import rtc_ice_servers as to_rtc


def turn_credentials(secret: str, ttl_s: float, label: str, now: float) -> tuple[str, str]:
    """(username, credential) valid until ``now + ttl_s``."""
    username = f"{int(now + ttl_s)}:{label}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(settings: Settings, label: str, now: float | None = None) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries (the browser's shape): STUN/TURN URLs, then the TURN relay."""
    servers: list[dict[str, Any]] = [{"urls": [url]} for url in settings.ice_servers]
    if settings.turn_urls:
        entry: dict[str, Any] = {"urls": list(settings.turn_urls)}
        if settings.turn_secret:
            user, credential = turn_credentials(
                settings.turn_secret,
                settings.turn_ttl_s,
                label,
                time.time() if now is None else now,
            )
            entry |= {"username": user, "credential": credential}
        servers.append(entry)
    return servers


def rtc_ice_servers(settings: Settings) -> list[RTCIceServer]:
    """The same list for the server's own RTCPeerConnection."""
    return to_rtc(ice_servers(settings, "mirage-server"))


__all__ = ["ice_servers", "rtc_ice_servers", "turn_credentials"]
