"""POST /offer and the /sessions/{id} API: HTTP offer/answer → a Session.

Every way in (/offer, WHIP) goes through ``open_session``: admission
(``MirageServer.admit``), the offer's models, then ``Session.open``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection

from mirage.models.base import BadInput, MirageError
from mirage.security import turn
from mirage.state import SERVER, MirageServer, ServerFull, ShuttingDown
from mirage.webrtc.offer import BadOffer, Offer, parse_offer, parse_quality
from mirage.webrtc.session import MAX_RECEIVER_DELAY_MS, Session

log = logging.getLogger(__name__)


async def handle_offer(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    with counted(server):
        offer = parse_offer(await request.read())
        session = await open_session(server, offer)
    desc = session.pc.localDescription
    return web.json_response({"sdp": desc.sdp, "type": desc.type, "session_id": session.id})


@contextmanager
def counted(server: MirageServer) -> Iterator[None]:
    """Count one session-creating request (/offer, WHIP) in ``offers_total`` by result."""
    try:
        yield
    except MirageError as exc:
        server.metrics.offers_total.labels(type(exc).__name__).inc()
        raise
    server.metrics.offers_total.labels("ok").inc()


async def open_session(server: MirageServer, offer: Offer) -> Session:
    """Admission (503 when full or draining), the offer's models, then the answer."""
    with server.admit():
        backends = await server.make_backends(offer)
        session = await Session.open(
            new_peer_connection(server),
            backends,
            server.settings,
            server.metrics,
            offer.sdp,
            pinned_level=offer.pinned_level,
            on_open=server.add_session,
            on_closed=server.remove_session,
        )
    if server.draining:  # shutdown began while this one was being answered
        await session.close("server shutting down")
        raise ShuttingDown("server shutting down; retry on another instance")
    return session


def new_peer_connection(server: MirageServer) -> RTCPeerConnection:
    """A server-side peer connection with the configured ICE servers."""
    ice = turn.rtc_ice_servers(server.settings)  # STUN, and TURN with fresh REST credentials
    return RTCPeerConnection(RTCConfiguration(iceServers=ice))


async def handle_delete(request: web.Request) -> web.Response:
    session = request.app[SERVER].session(request.match_info["session_id"])
    await session.close("closed by DELETE")
    return web.json_response({"session_id": session.id, "closed": True})


async def handle_session_patch(request: web.Request) -> web.Response:
    """Live changes to a session: ``{"quality": "auto"|level, "voice_options": {...},
    "receiver_delay_ms": {"video": ms, "audio": ms}}`` (the last: the viewer's own
    receive→display delays, which the playout clock leads the video by)."""
    session = request.app[SERVER].session(request.match_info["session_id"])
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    quality = body.get("quality")
    if quality is not None:
        parse_quality(quality)  # validate before changing anything
    voice_options = body.get("voice_options") or {}
    if not isinstance(voice_options, dict):
        raise BadInput("voice_options must be an object")
    receiver = body.get("receiver_delay_ms")
    if receiver is not None:
        video_ms, audio_ms = _receiver_delays(receiver)
    session.configure(quality, voice_options)
    if receiver is not None:
        session.report_receiver(video_ms, audio_ms)
    return web.json_response(session.stats())


def _receiver_delays(value: object) -> tuple[float, float]:
    if not isinstance(value, dict) or set(value) != {"video", "audio"}:
        raise BadInput('receiver_delay_ms must be {"video": ms, "audio": ms}')
    out = []
    for name in ("video", "audio"):
        ms = value[name]
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms):
            raise BadInput(f"receiver_delay_ms.{name} must be a number")
        if not 0.0 <= ms <= MAX_RECEIVER_DELAY_MS:
            raise BadInput(f"receiver_delay_ms.{name} must be 0..{MAX_RECEIVER_DELAY_MS:.0f}")
        out.append(float(ms))
    return out[0], out[1]


async def handle_session_stats(request: web.Request) -> web.Response:
    session = request.app[SERVER].session(request.match_info["session_id"])
    return web.json_response(session.stats())


__all__ = [
    "BadOffer",
    "Offer",
    "ServerFull",
    "ShuttingDown",
    "counted",
    "handle_delete",
    "handle_offer",
    "handle_session_patch",
    "handle_session_stats",
    "new_peer_connection",
    "open_session",
    "parse_quality",
]
