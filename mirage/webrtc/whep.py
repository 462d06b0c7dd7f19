"""WHEP egress: ``POST /whep/{session}`` lets any WHEP player watch a session's avatar
and voice (e.g. OBS bringing the avatar in as a source).

A viewer is a send-only peer connection fed by taps on the session's output
tracks (``mirage.webrtc.fanout``): it adds no model work, only an encoder.
Viewers end with their session; a viewer leaving (DELETE, ICE failure, never
connecting) never ends the session.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from mirage.models.base import MirageError
from mirage.state import SERVER, MirageServer, NoSuchSession
from mirage.webrtc import aiortc_compat, httpsdp
from mirage.webrtc.fanout import Tap
from mirage.webrtc.lifetime import PeerLifetime
from mirage.webrtc.offer import BadOffer
from mirage.webrtc.session import Session
from mirage.webrtc.signalling import new_peer_connection

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0  # a viewer not connected by then is gone
RESOURCE_ALLOW = "DELETE"
ENDPOINT_ALLOW = "POST, OPTIONS"


class ViewersFull(MirageError):
    """The session already has its maximum number of WHEP viewers."""

    status = 503
    retry_after_s = 5


class NoSuchViewer(MirageError):
    status = 404


class WhepViewer:
    """One WHEP player: a peer connection that sends the session's output."""

    def __init__(self, session: Session, pc: RTCPeerConnection, grace_s: float) -> None:
        self.id = uuid.uuid4().hex
        self.session = session
        self.pc = pc
        self.taps: list[Tap] = []
        self._life = PeerLifetime(
            pc, lambda: f"viewer {self.id} of {session.id}", grace_s, self.close
        )

    @property
    def closed_reason(self) -> str | None:
        return self._life.closed_reason

    async def answer(self, sdp: str, settings: Any) -> str:
        """Answer the player's (receive-only) offer with the session's tracks."""
        pc = self.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises many types for bad SDP
            raise BadOffer(f"cannot use this SDP: {exc or type(exc).__name__}") from None
        offered = {t.kind for t in pc.getTransceivers()}
        for track in (self.session.video, self.session.audio):
            if track is not None and track.kind in offered:
                tap = self.session.outputs.subscribe(track)
                self.taps.append(tap)
                pc.addTrack(tap)
        for transceiver in pc.getTransceivers():
            # Send only: media a player might offer to send would pile up unread.
            transceiver.direction = "sendonly" if transceiver.sender.track else "inactive"
        if not self.taps:
            have = [t.kind for t in (self.session.video, self.session.audio) if t is not None]
            raise BadOffer(
                f"the offer asks for {sorted(offered) or 'no media'}; this session has {have}"
            )
        with aiortc_compat.ice_hosts(settings.ice_hosts, settings.udp_ports):
            await pc.setLocalDescription(await pc.createAnswer())
        self._life.watch(connect_timeout_s=CONNECT_TIMEOUT_S)
        return str(pc.localDescription.sdp)

    async def close(self, reason: str) -> None:
        """Idempotent; the session goes on."""
        if not self._life.begin_close(reason):  # also cancels the viewer's grace tasks
            return
        log.info("viewer %s of %s closing: %s", self.id, self.session.id, reason)
        self.session.remove_viewer(self.id)
        for tap in self.taps:
            tap.stop()
        await self.pc.close()


LATEST = "latest"  # /whep/latest: the newest session (one OBS feeding one OBS)


def _live_session(server: MirageServer, session_id: str) -> Session:
    session = server.latest_session() if session_id == LATEST else server.session(session_id)
    if session.closed_reason is not None or session.outputs.closed:
        raise NoSuchSession(f"session {session_id!r} is ending")
    return session


async def handle_post(request: web.Request) -> web.Response:
    """``POST /whep/{session_id}``: a receive-only SDP offer → 201 + answer + Location."""
    server = request.app[SERVER]
    settings = server.settings
    session = _live_session(server, request.match_info["session_id"])
    sdp = await httpsdp.read_sdp(request)
    cap = settings.max_viewers_per_session
    if session.viewer_count >= cap:
        raise ViewersFull(f"session {session.id} has {cap} viewers, the limit; retry later")
    viewer = WhepViewer(session, new_peer_connection(server), settings.disconnected_grace_s)
    session.add_viewer(viewer.id, viewer)  # counted while it is being answered
    try:
        answer = await viewer.answer(sdp, settings)
        if session.closed_reason is not None:  # the session ended meanwhile
            raise NoSuchSession(f"session {session.id!r} ended")
    except BaseException:
        await viewer.close("offer failed")
        raise
    return httpsdp.created(answer, f"/whep/{session.id}/{viewer.id}", settings)


async def handle_delete(request: web.Request) -> web.Response:
    """``DELETE /whep/{session_id}/{viewer_id}``: that viewer stops; the session goes on."""
    session = request.app[SERVER].session(request.match_info["session_id"])
    viewer_id = request.match_info["viewer_id"]
    viewer = session.viewer(viewer_id)
    if not isinstance(viewer, WhepViewer):
        raise NoSuchViewer(f"session {session.id} has no viewer {viewer_id!r}")
    await viewer.close("closed by DELETE")
    return web.json_response({"session_id": session.id, "viewer_id": viewer_id, "closed": True})


async def handle_patch(request: web.Request) -> web.Response:
    session = request.app[SERVER].session(request.match_info["session_id"])
    viewer_id = request.match_info["viewer_id"]
    if session.viewer(viewer_id) is None:
        raise NoSuchViewer(f"session {session.id} has no viewer {viewer_id!r}")
    return httpsdp.patch_not_allowed(RESOURCE_ALLOW)


async def handle_options(request: web.Request) -> web.Response:
    _live_session(request.app[SERVER], request.match_info["session_id"])
    return httpsdp.endpoint_options(ENDPOINT_ALLOW)


__all__ = [
    "CONNECT_TIMEOUT_S",
    "LATEST",
    "NoSuchViewer",
    "ViewersFull",
    "WhepViewer",
    "handle_delete",
    "handle_options",
    "handle_patch",
    "handle_post",
]
