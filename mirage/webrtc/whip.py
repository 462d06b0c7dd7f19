"""WHIP ingest (RFC 9725): ``POST /whip`` with an SDP offer publishes a camera and mic
(OBS Studio 30+, any WHIP encoder) into a new session.

The session is the same as one made by ``/offer`` (same admission, models,
errors and metrics: ``signalling.open_session``); backend choices ride in the
query string, since the body is raw SDP:
``/whip?face=warp&voice=dsp&preset=deep&quality=auto``. A publisher's offer is
usually send-only; its session still runs the avatar and voice, paced by the
session's own output hub, for WHEP viewers (``mirage.webrtc.whep``) to watch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from mirage.security.policy import COSTLY, OPEN, PROTECTED
from mirage.security.policy import add_route as route
from mirage.state import SERVER
from mirage.webrtc import httpsdp, whep
from mirage.webrtc.offer import BadOffer, Offer, parse_quality
from mirage.webrtc.signalling import counted, open_session

log = logging.getLogger(__name__)

QUERY_KEYS = ("face", "voice", "preset", "denoise", "quality")
ENDPOINT_ALLOW = "POST, OPTIONS"
RESOURCE_ALLOW = "DELETE"


def offer_from_query(sdp: str, query: Mapping[str, str]) -> Offer:
    """The ``/offer`` options, from ``?face=&voice=&preset=&denoise=&quality=``."""
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise BadOffer(f"unknown query parameter(s) {unknown}; known: {list(QUERY_KEYS)}")
    quality: str | int = query.get("quality", "auto")
    if isinstance(quality, str) and quality.isdigit():
        quality = int(quality)
    voice_options = {key: query[key] for key in ("preset", "denoise") if key in query}
    return Offer(
        sdp=sdp,
        face=query.get("face"),
        voice=query.get("voice"),
        face_options={},
        voice_options=voice_options,
        pinned_level=parse_quality(quality),
    )


async def handle_post(request: web.Request) -> web.Response:
    """``POST /whip``: 201 + the SDP answer + ``Location: /whip/{session_id}``."""
    server = request.app[SERVER]
    with counted(server):
        sdp = await httpsdp.read_sdp(request)
        session = await open_session(server, offer_from_query(sdp, request.query))
    log.info("WHIP session %s: watch it at /whep/%s", session.id, session.id)
    answer = str(session.pc.localDescription.sdp)
    return httpsdp.created(answer, f"/whip/{session.id}", server.settings)


async def handle_options(request: web.Request) -> web.Response:
    return httpsdp.endpoint_options(ENDPOINT_ALLOW)


async def handle_delete(request: web.Request) -> web.Response:
    """``DELETE /whip/{session_id}``: the session ends (its WHEP viewers with it)."""
    session = request.app[SERVER].session(request.match_info["session_id"])
    await session.close("closed by WHIP DELETE")
    return web.json_response({"session_id": session.id, "closed": True})


async def handle_patch(request: web.Request) -> web.Response:
    request.app[SERVER].session(request.match_info["session_id"])  # 404 first
    return httpsdp.patch_not_allowed(RESOURCE_ALLOW)


def add_routes(app: web.Application) -> None:
    """The WHIP endpoint and session resources, and the WHEP ones, with their policies."""
    route(app, "POST", "/whip", handle_post, COSTLY)  # makes a session
    route(app, "OPTIONS", "/whip", handle_options, OPEN)
    route(app, "DELETE", "/whip/{session_id}", handle_delete, PROTECTED)
    route(app, "PATCH", "/whip/{session_id}", handle_patch, PROTECTED)
    route(app, "POST", "/whep/{session_id}", whep.handle_post, PROTECTED)
    route(app, "OPTIONS", "/whep/{session_id}", whep.handle_options, OPEN)
    route(app, "DELETE", "/whep/{session_id}/{viewer_id}", whep.handle_delete, PROTECTED)
    route(app, "PATCH", "/whep/{session_id}/{viewer_id}", whep.handle_patch, PROTECTED)


__all__ = ["QUERY_KEYS", "add_routes", "handle_delete", "handle_post", "offer_from_query"]
