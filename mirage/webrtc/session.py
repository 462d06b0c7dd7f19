"""One Session = one RTCPeerConnection, its two output tracks and its models.

``Session.open`` owns the order a session is assembled in (guards on the models,
peer events hooked, the offer answered, registered, started). ``close()`` is
idempotent and always runs, whatever ends the session: DELETE, ICE failure, a
peer that closes, a source track that ends, inbound media that stops for
``media_timeout_s`` (a peer that vanished without a word), shutdown. It never
blocks the event loop: threads are joined off it.

The jobs around it are small modules: ``peer`` (output tracks from inbound ones),
``lifetime`` (tasks, grace timers, close once; shared with WHEP viewers),
``watchdog`` (no media → close) and ``stats`` (the stats view and gauges).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from mirage.config import Settings
from mirage.engine.adapt import find_level
from mirage.engine.backends import (
    Backends,
    GuardPolicy,
    close_backends,
    supervise,
    wait_backends_closed,
)
from mirage.engine.voicechain import validate_voice
from mirage.metrics import Metrics
from mirage.models import registry
from mirage.models.base import BadInput
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.factory import playout_clock, video_codec_lead_s
from mirage.tracks.sync import PlayoutClock
from mirage.tracks.video import AvatarVideoTrack
from mirage.webrtc import aiortc_compat, stats
from mirage.webrtc.fanout import Fanout, Viewer
from mirage.webrtc.lifetime import PeerLifetime
from mirage.webrtc.offer import BadOffer
from mirage.webrtc.peer import PeerTracks
from mirage.webrtc.watchdog import watch_media

log = logging.getLogger(__name__)

MAX_RECEIVER_DELAY_MS = 400.0  # a viewer's reported receive→display; beyond it, a bad report


@dataclass
class Session:
    pc: RTCPeerConnection
    backends: Backends
    settings: Settings
    metrics: Metrics
    on_closed: Callable[[Session], None]
    id: str = ""  # "" → a fresh id, prefixed with settings.instance_id when set
    pinned_level: int | None = None  # None: adaptive quality
    clock: PlayoutClock = field(init=False)
    outputs: Fanout = field(init=False)  # the output tracks, shared with WHEP viewers
    created: float = field(default_factory=time.monotonic)
    _media: PeerTracks = field(init=False)
    _life: PeerLifetime = field(init=False)

    def __post_init__(self) -> None:
        if not self.id:
            prefix = self.settings.instance_id
            self.id = f"{prefix}-{uuid.uuid4().hex}" if prefix else uuid.uuid4().hex
        self.clock = playout_clock(self.settings)
        self.outputs = Fanout(self.metrics)
        self._life = PeerLifetime(
            self.pc,
            lambda: f"session {self.id}",
            self.settings.disconnected_grace_s,
            self.close,
        )
        self._supervise()
        self._media = PeerTracks(
            self.backends, self.settings, self.clock, self.metrics, self.outputs, self.close_soon
        )
        self._media.pinned_level = self.pinned_level

    @classmethod
    async def open(
        cls,
        pc: RTCPeerConnection,
        backends: Backends,
        settings: Settings,
        metrics: Metrics,
        offer_sdp: str,
        *,
        pinned_level: int | None,
        on_open: Callable[[Session], None],
        on_closed: Callable[[Session], None],
    ) -> Session:
        """The one way a session is made: guarded models, ``pc``'s events hooked, the
        offer answered (``BadOffer`` for an offer we cannot use; the session is closed
        on any failure), ``on_open`` (the server registers it), then its tasks start."""
        session = cls(pc, backends, settings, metrics, on_closed, pinned_level=pinned_level)
        session._media.wire(pc)
        session._life.watch()
        try:
            await session._answer(offer_sdp)
        except BaseException:
            await session.close("offer failed")
            raise
        on_open(session)
        session._start()
        return session

    def _supervise(self) -> None:
        """Put each backend behind a guard (deadline, fallback, restart; engine/guard.py)."""
        supervise(self.backends, GuardPolicy.of(self.settings), self.id[-8:], self.metrics)

    # -- opening -----------------------------------------------------------------
    async def _answer(self, offer_sdp: str) -> None:
        pc, settings = self.pc, self.settings
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises many types for bad SDP
            raise BadOffer(f"cannot use this SDP: {exc or type(exc).__name__}") from None
        if self.video is None and self.audio is None:
            raise BadOffer("the offer has neither a video nor an audio track to transform")
        if settings.low_latency_receive:
            aiortc_compat.use_low_latency_receivers(pc)
        with aiortc_compat.ice_hosts(settings.ice_hosts, settings.udp_ports):
            await pc.setLocalDescription(await pc.createAnswer())

    def _start(self) -> None:
        """Start the tracks' drains and workers, the output hubs and the media watchdog."""
        self._media.start()
        self.outputs.start(self.pc)
        self._life.spawn(
            watch_media(
                lambda: self._media.tracks,
                self.settings.media_timeout_s,
                lambda: stats.publish_gauges(self),
                self.close_soon,
            )
        )

    @property
    def video(self) -> AvatarVideoTrack | None:
        return self._media.video

    @property
    def audio(self) -> VoiceAudioTrack | None:
        return self._media.audio

    @property
    def closed_reason(self) -> str | None:
        """Why it closed (or is closing); None while live."""
        return self._life.closed_reason

    # -- WHEP viewers (they end with the session) ----------------------------------------
    def add_viewer(self, viewer_id: str, viewer: Viewer) -> None:
        self.outputs.viewers[viewer_id] = viewer

    def remove_viewer(self, viewer_id: str) -> None:
        self.outputs.viewers.pop(viewer_id, None)

    def viewer(self, viewer_id: str) -> Viewer | None:
        return self.outputs.viewers.get(viewer_id)

    @property
    def viewer_count(self) -> int:
        return len(self.outputs.viewers)

    # -- ending ------------------------------------------------------------------
    def report_receiver(self, video_ms: float, audio_ms: float) -> None:
        """The viewer's own delays after it receives each track (video: receive →
        display; audio: its jitter buffer), so that lips meet on its screen. The PATCH
        handler checks them (0..MAX_RECEIVER_DELAY_MS) before anything changes."""
        clock = self.clock
        video_s = video_codec_lead_s(self.settings) + video_ms / 1000
        clock.set_downstream("video", min(clock.max_delay_s, video_s))
        clock.set_downstream("audio", min(clock.max_delay_s, audio_ms / 1000))

    def close_soon(self, reason: str) -> None:
        """Close from a callback that cannot await (never from inside close itself)."""
        self._life.close_soon(reason)

    async def close(self, reason: str = "closed") -> None:
        if not self._life.begin_close(reason):  # also cancels the session's tasks
            return
        log.info("session %s closing: %s", self.id, reason)
        # First the models: this wakes a worker waiting on a slow or hung model call,
        # so the track workers end promptly.
        self._release_models()
        self._media.stop()  # non-blocking; their threads are joined below, off the loop
        await self.outputs.close()  # WHEP viewers end with the session
        await self.pc.close()
        if not await self._media.wait_stopped():
            log.warning("session %s: a track worker is still busy after close", self.id)
        await asyncio.get_running_loop().run_in_executor(None, self._wait_models_closed)
        stats.remove_gauges(self.metrics, self.id)
        self.on_closed(self)

    def _release_models(self) -> None:
        """Non-blocking: each guard closes its model on the model's own thread."""
        close_backends((self.backends.animator, self.backends.converter))

    def _wait_models_closed(self, timeout: float = 5.0) -> None:
        """The models' own threads finish closing them (bounded: a hung one is left)."""
        models = (self.backends.animator, self.backends.converter)
        if not wait_backends_closed(models, timeout):
            log.warning("session %s: a model is still busy after close", self.id)

    def configure(self, quality: str | None, voice_options: dict[str, Any]) -> None:
        """Live changes without reconnecting: pin/unpin quality, new voice settings.
        Everything is checked first: a bad voice option changes nothing."""
        checked: dict[str, Any] = {}
        converter = self.backends.converter
        if voice_options:
            voice = self.backends.voice
            own_keys = set(voice_options) - {"denoise"}  # the chain's own, live on any voice
            own_live = any(o.live for o in registry.schema("voice", voice))
            if not converter.live_settings or (own_keys and not own_live):
                raise BadInput(f"voice backend {voice} has no live settings")
            testing = self.settings.test_backends
            checked = validate_voice(voice, voice_options, testing=testing, live=True)
        if quality is not None and self.video is not None:
            self.video.pin_level(None if quality == "auto" else find_level(quality))
        if checked:
            converter.update(**checked)

    async def set_reference(self, image: Any) -> None:
        """A new portrait for this session (applied between two frames)."""
        if self.video is not None and self.video.readyState == "live":
            await self.video.set_reference(image)
            return
        animator = self.backends.animator
        await asyncio.get_running_loop().run_in_executor(None, animator.set_reference, image)

    # -- reporting -------------------------------------------------------------------
    def av_skew(self) -> float | None:
        """Audio output age − video output age (s), beyond the video's intended lead:
        what the server adds to lip sync."""
        return stats.av_skew(self.video, self.audio, self.clock)

    def stats(self) -> dict[str, Any]:
        return stats.session_stats(self)


__all__ = ["Session"]
