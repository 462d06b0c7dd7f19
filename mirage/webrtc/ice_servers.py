"""``GET /ice-servers``: the STUN/TURN list a page gives its RTCPeerConnection.

The credentials are made by ``mirage.security.turn`` (which knows nothing of the
server object); this handler only reads the settings off the app.
"""

from __future__ import annotations

from aiohttp import web

from mirage.security import turn
from mirage.state import SERVER


async def handle_ice_servers(request: web.Request) -> web.Response:
    """What the page should give its RTCPeerConnection (never cached: TURN passwords expire)."""
    settings = request.app[SERVER].settings
    return web.json_response(
        {
            "iceServers": turn.ice_servers(settings, "mirage-page"),
            "ttl_s": settings.turn_ttl_s if settings.turn_secret else None,
        },
        headers={"Cache-Control": "no-store"},
    )


__all__ = ["handle_ice_servers"]
