"""What WHIP (RFC 9725) and WHEP share on the HTTP side: an ``application/sdp`` body
in, ``201 Created`` + ``Location`` + the answer out, OPTIONS and refused PATCH.

Errors stay our JSON ``{"error", "kind"}`` bodies, raised as typed errors and
mapped in ``mirage.app`` like every other route's.
"""

from __future__ import annotations

from aiohttp import web

from mirage.config import Settings
from mirage.models.base import BadInput
from mirage.security import turn
from mirage.webrtc.offer import BadOffer

SDP = "application/sdp"


class UnsupportedMediaType(BadInput):
    status = 415


async def read_sdp(request: web.Request) -> str:
    """The request's SDP offer: 415 unless ``application/sdp``, 400 unless it is UTF-8
    text starting with ``v=0``. (Its size is capped by the route's policy, once, in
    ``mirage.security.limits``: an SDP body is at most ``max_offer_bytes``.)"""
    if request.content_type != SDP:
        got = request.headers.get("Content-Type", "none")
        raise UnsupportedMediaType(f"the body must be {SDP} (an SDP offer), got {got!r}")
    body = await request.read()
    try:
        sdp = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadOffer("the SDP offer is not UTF-8 text") from None
    if not sdp.startswith("v=0"):
        raise BadOffer("the body must be an SDP offer starting with 'v=0'")
    return sdp


def ice_server_links(settings: Settings) -> list[str]:
    """RFC 9725 §4.6 ``Link`` values: our STUN/TURN servers (TURN with fresh credentials)."""
    links = []
    for entry in turn.ice_servers(settings, "mirage-whip"):
        extra = ""
        if "username" in entry:
            extra = (
                f'; username="{entry["username"]}"; credential="{entry["credential"]}"'
                '; credential-type="password"'
            )
        links += [f'<{url}>; rel="ice-server"{extra}' for url in entry["urls"]]
    return links


def created(answer_sdp: str, location: str, settings: Settings) -> web.Response:
    """``201 Created``: the SDP answer, and where the new resource lives."""
    # Bytes, so the type is exactly application/sdp (no charset parameter).
    response = web.Response(status=201, body=answer_sdp.encode(), content_type=SDP)
    response.headers["Location"] = location  # (CORS exposes it: mirage/security/cors.py)
    for link in ice_server_links(settings):
        response.headers.add("Link", link)
    return response


def endpoint_options(allow: str) -> web.Response:
    """OPTIONS on an endpoint: what it accepts (CORS preflights are answered earlier,
    by the CORS middleware, when one is configured)."""
    return web.Response(
        status=204,
        headers={"Accept-Post": SDP, "Allow": allow},
    )


def patch_not_allowed(allow: str) -> web.Response:
    """RFC 9725 §4.3.1: a session without trickle ICE or ICE restart answers PATCH 405.
    (aiortc gathers every candidate before it answers, so an offer with its own
    candidates, as OBS sends, needs no trickle.)"""
    return web.json_response(
        {
            "error": "this resource supports neither trickle ICE nor ICE restarts "
            "(send every candidate in the offer)",
            "kind": "MethodNotAllowed",
        },
        status=405,
        headers={"Allow": allow},
    )


__all__ = [
    "SDP",
    "UnsupportedMediaType",
    "created",
    "endpoint_options",
    "ice_server_links",
    "patch_not_allowed",
    "read_sdp",
]
