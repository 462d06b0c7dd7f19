"""POST /offer and DELETE /sessions/{id}: HTTP offer/answer → a Session."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from mirage.engine.adapt import find_level
from mirage.models.base import BadInput, MirageError
from mirage.security import turn
from mirage.state import SERVER, MirageServer
from mirage.webrtc import aiortc_compat
from mirage.webrtc.session import MAX_RECEIVER_DELAY_MS, Backends, Session

log = logging.getLogger(__name__)


class BadOffer(BadInput):
    """An offer we cannot parse or answer."""


class ServerFull(MirageError):
    """Admission refused: the instance is at capacity (retry another instance)."""

    status = 503
    retry_after_s = 5


class ShuttingDown(ServerFull):
    """Admission refused: the instance is draining before it exits."""

    retry_after_s = 1


class TooLarge(BadInput):
    status = 413


@dataclass(frozen=True)
class Offer:
    sdp: str
    face: str | None
    voice: str | None
    face_options: dict[str, Any]
    voice_options: dict[str, Any]
    pinned_level: int | None = None


def parse_offer(body: bytes, max_bytes: int) -> Offer:
    """Validate the JSON body of POST /offer; every problem is a BadOffer with a reason."""
    if len(body) > max_bytes:
        raise TooLarge(f"offer is {len(body)} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadOffer(f"offer body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadOffer("offer body must be a JSON object with 'sdp' and 'type'")
    if data.get("type") != "offer":
        raise BadOffer(f"'type' must be 'offer', got {data.get('type')!r}")
    sdp = data.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise BadOffer("'sdp' must be an SDP string starting with 'v=0'")
    options = data.get("options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise BadOffer("'options' must be an object")

    def name(key: str) -> str | None:
        value = options.get(key)
        if value is not None and not isinstance(value, str):
            raise BadOffer(f"options.{key} must be a backend name")
        return value

    def extra(key: str) -> dict[str, Any]:
        value = options.get(key)
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise BadOffer(f"options.{key} must be an object")
        return value

    return Offer(
        sdp,
        name("face"),
        name("voice"),
        extra("face_options"),
        extra("voice_options"),
        parse_quality(options.get("quality", "auto")),
    )


def parse_quality(value: Any) -> int | None:
    """``"auto"`` → None (adaptive); a level name or index → that level pinned."""
    if value is None or value == "auto":
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise BadOffer("'quality' must be 'auto', a level name or a level index")
    try:
        return find_level(value)
    except ValueError as exc:
        raise BadOffer(str(exc)) from None


async def handle_offer(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    with counted(server):
        offer = parse_offer(await request.read(), server.settings.max_offer_bytes)
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
    """Admission (503 when full), the offer's models, then the answer: every way in
    (/offer, WHIP) goes through here."""
    settings = server.settings
    if server.draining:
        raise ShuttingDown("server shutting down; retry on another instance")
    # Offers still being answered count too, or a burst of them would all get in.
    if len(server.sessions) + server.admitting >= settings.max_sessions:
        raise ServerFull(f"at capacity ({settings.max_sessions} sessions); retry later")
    server.admitting += 1
    try:
        backends = await server.make_backends(offer)
        session = await _answer(server, offer, backends)
    finally:
        server.admitting -= 1
    if server.draining:  # shutdown began while this one was being answered
        await session.close("server shutting down")
        raise ShuttingDown("server shutting down; retry on another instance")
    return session


def new_peer_connection(server: MirageServer) -> RTCPeerConnection:
    """A server-side peer connection with the configured ICE servers."""
    ice = turn.rtc_ice_servers(server.settings)  # STUN, and TURN with fresh REST credentials
    return RTCPeerConnection(RTCConfiguration(iceServers=ice))


async def _answer(server: MirageServer, offer: Offer, backends: Backends) -> Session:
    settings = server.settings
    pc = new_peer_connection(server)
    session = Session(pc, backends, settings, server.metrics, server.forget)
    session.pinned_level = offer.pinned_level
    session.attach()
    try:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:  # aiortc raises many types for bad SDP
            raise BadOffer(f"cannot use this SDP: {exc or type(exc).__name__}") from None
        if session.video is None and session.audio is None:
            raise BadOffer("the offer has neither a video nor an audio track to transform")
        if settings.low_latency_receive:
            aiortc_compat.use_low_latency_receivers(pc)
        with aiortc_compat.ice_hosts(settings.ice_hosts, settings.udp_ports):
            await pc.setLocalDescription(await pc.createAnswer())
    except BaseException:
        await session.close("offer failed")
        raise
    server.remember(session)
    session.start()
    return session


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
    "TooLarge",
    "counted",
    "handle_delete",
    "handle_offer",
    "handle_session_patch",
    "handle_session_stats",
    "new_peer_connection",
    "open_session",
    "parse_quality",
]
