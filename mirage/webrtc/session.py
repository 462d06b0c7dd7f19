"""One Session = one RTCPeerConnection, its two output tracks and its models.

``close()`` is idempotent and always runs, whatever ends the session: DELETE,
ICE failure, a peer that closes, a source track that ends, inbound media that
stops for ``media_timeout_s`` (a peer that vanished without a word), shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from mirage.config import Settings
from mirage.engine.adapt import find_level
from mirage.engine.backends import Backends
from mirage.engine.supervised import SupervisedAnimator, SupervisedConverter
from mirage.engine.voicechain import validate_voice
from mirage.metrics import Metrics
from mirage.models import registry
from mirage.models.base import BadInput
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.factory import avatar_track, playout_clock, voice_track
from mirage.tracks.sync import PlayoutClock
from mirage.tracks.video import AvatarVideoTrack
from mirage.webrtc.fanout import Fanout

log = logging.getLogger(__name__)


@dataclass
class Session:
    pc: RTCPeerConnection
    backends: Backends
    settings: Settings
    metrics: Metrics
    on_closed: Callable[[Session], None]
    id: str = ""  # "" → a fresh id, prefixed with settings.instance_id when set
    clock: PlayoutClock = field(init=False)
    outputs: Fanout = field(init=False)  # the output tracks, shared with WHEP viewers
    created: float = field(default_factory=time.monotonic)
    pinned_level: int | None = None  # None: adaptive quality
    video: AvatarVideoTrack | None = None
    audio: VoiceAudioTrack | None = None
    closed_reason: str | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _closing: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if not self.id:
            prefix = self.settings.instance_id
            self.id = f"{prefix}-{uuid.uuid4().hex}" if prefix else uuid.uuid4().hex
        self.clock = playout_clock(self.settings)
        self.outputs = Fanout(self.metrics)
        self._supervise()

    def _supervise(self) -> None:
        """Put each backend behind a guard (deadline, fallback, restart; engine/guard.py)."""
        b, s, m = self.backends, self.settings, self.metrics
        if isinstance(b.animator, SupervisedAnimator):
            return

        def guard(track: str, backend: str) -> dict[str, Any]:
            return {
                "name": f"{track}-{self.id[-8:]}",
                "timeout_s": s.model_timeout_s,
                "restart_after": s.model_restart_after,
                "on_timeout": m.model_timeouts.labels(track, backend).inc,
                "on_restart": m.backend_restarts.labels(track, backend).inc,
            }

        b.animator = SupervisedAnimator(
            b.animator, b.make_animator, b.reference, **guard("video", b.face)
        )
        b.converter = SupervisedConverter(b.converter, b.make_converter, **guard("audio", b.voice))

    # -- wiring ----------------------------------------------------------------
    def attach(self) -> None:
        """Hook the peer connection's events; call before setRemoteDescription."""
        pc = self.pc

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video" and self.video is None:
                self.video = avatar_track(
                    track,
                    self.backends,
                    self.settings,
                    self.clock,
                    self.metrics,
                    self.pinned_level,
                    on_source_ended=lambda: self.close_soon("camera track ended"),
                )
                pc.addTrack(self.outputs.subscribe(self.video))
            elif track.kind == "audio" and self.audio is None:
                self.audio = voice_track(
                    track,
                    self.backends,
                    self.settings,
                    self.clock,
                    self.metrics,
                    on_source_ended=lambda: self.close_soon("microphone track ended"),
                )
                pc.addTrack(self.outputs.subscribe(self.audio))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.info("session %s: connection %s", self.id, state)
            if state in ("failed", "closed"):
                self.close_soon(f"connection {state}")
            elif state == "disconnected":
                self._spawn(self._close_if_still_disconnected())

    def start(self) -> None:
        """Start the tracks' drains and workers and the media watchdog."""
        for track in (self.video, self.audio):
            if track is not None:
                track.start()
        self.outputs.start(self.pc)
        self._spawn(self._watchdog())

    # -- ending ------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _close_if_still_disconnected(self) -> None:
        await asyncio.sleep(self.settings.disconnected_grace_s)
        if self.pc.connectionState == "disconnected":
            self.close_soon("disconnected past grace")

    async def _watchdog(self) -> None:
        timeout = self.settings.media_timeout_s
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            self._publish_gauges()
            tracks = [t for t in (self.video, self.audio) if t is not None]
            if not tracks:
                continue
            idle = time.monotonic() - max(t.last_input for t in tracks)
            if idle > timeout:
                self.close_soon(f"no media for {idle:.1f} s")
                return

    def av_skew(self) -> float | None:
        """Audio output age − video output age (s): what the server adds to lip sync."""
        if self.video is None or self.audio is None:
            return None
        if self.video.output_age is None or self.audio.output_age is None:
            return None
        return self.audio.output_age - self.video.output_age

    def _publish_gauges(self) -> None:
        self.metrics.playout_delay.labels(self.id).set(self.clock.delay_s)
        skew = self.av_skew()
        if skew is not None:
            self.metrics.av_skew.labels(self.id).set(skew)
        if self.video is not None:
            self.metrics.quality_level.labels(self.id).set(self.video.controller.index)
        converter = self.backends.converter
        share = converter.gate_open_share if isinstance(converter, SupervisedConverter) else None
        if share is not None:
            self.metrics.voice_gate_open.labels(self.id).set(share)

    def close_soon(self, reason: str) -> None:
        """Close from a callback that cannot await (never from inside close itself)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        log.info("session %s closing: %s", self.id, reason)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        # First the models: this wakes a worker waiting on a slow or hung model call,
        # so stopping the tracks below does not wait for it (never blocks).
        self._release_models()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        await self.outputs.close()  # WHEP viewers end with the session
        await self.pc.close()
        await asyncio.get_running_loop().run_in_executor(None, self._wait_models_closed)
        metrics = self.metrics
        for gauge in (
            metrics.playout_delay,
            metrics.quality_level,
            metrics.av_skew,
            metrics.voice_gate_open,
        ):
            with contextlib.suppress(KeyError):  # never published: a session that never ran
                gauge.remove(self.id)
        self.on_closed(self)

    def _release_models(self) -> None:
        """Non-blocking: each guard closes its model on the model's own thread."""
        for model in (self.backends.animator, self.backends.converter):
            close = getattr(model, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # pragma: no cover - best effort on the way out
                    log.exception("closing a model failed")

    def _wait_models_closed(self, timeout: float = 5.0) -> None:
        """The models' own threads finish closing them (bounded: a hung one is left)."""
        deadline = time.monotonic() + timeout
        for model in (self.backends.animator, self.backends.converter):
            wait = getattr(model, "wait_closed", None)
            if callable(wait) and not wait(max(0.0, deadline - time.monotonic())):
                log.warning("session %s: a model is still busy after close", self.id)

    def configure(self, quality: str | None, voice_options: dict[str, Any]) -> None:
        """Live changes without reconnecting: pin/unpin quality, new voice settings.
        Everything is checked first: a bad voice option changes nothing."""
        checked: dict[str, Any] = {}
        update = getattr(self.backends.converter, "update", None)
        if voice_options:
            voice = self.backends.voice
            own_keys = set(voice_options) - {"denoise"}  # the chain's own, live on any voice
            own_live = any(o.live for o in registry.schema("voice", voice))
            if not callable(update) or (own_keys and not own_live):
                raise BadInput(f"voice backend {voice} has no live settings")
            testing = self.settings.test_backends
            checked = validate_voice(voice, voice_options, testing=testing, live=True)
        if quality is not None and self.video is not None:
            self.video.pin_level(None if quality == "auto" else find_level(quality))
        if checked and callable(update):
            update(**checked)

    async def set_reference(self, image: Any) -> None:
        """A new portrait for this session (applied between two frames)."""
        if self.video is not None and self.video.readyState == "live":
            await self.video.set_reference(image)
            return
        animator = self.backends.animator
        await asyncio.get_running_loop().run_in_executor(None, animator.set_reference, image)

    # -- reporting -------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "session_id": self.id,
            "state": self.pc.connectionState,
            "face": self.backends.face,
            "voice": self.backends.voice,
            "age_s": round(time.monotonic() - self.created, 3),
            "viewers": len(self.outputs.viewers),
            "playout_delay_ms": round(self.clock.delay_s * 1000, 1),
            "av_skew_ms": None if (skew := self.av_skew()) is None else round(skew * 1000, 1),
            "latency_p95_ms": {
                track: round(p95 * 1000, 1)
                for track in ("video", "audio")
                if (p95 := self.clock.latency_p95(track)) is not None
            },
        }
        if self.video is not None:
            controller = self.video.controller
            out["quality"] = {
                "level": controller.level.name,
                "index": controller.index,
                "pinned": controller.pinned is not None,
                "moves": [
                    {"to": m.level.name, "direction": m.direction, "reason": m.reason}
                    for m in controller.moves[-5:]
                ],
            }
            out["video"] = {
                "frames_in": self.video.frames_in,
                "frames_out": self.video.frames_out,
                "dropped": self.video.dropped,
                "errors": self.video.errors,
                "size": self.video.size,
                **_guard_stats(self.backends.animator),
            }
        if self.audio is not None:
            out["audio"] = {
                "frames_in": self.audio.frames_in,
                "frames_out": self.audio.frames_out,
                "errors": self.audio.errors,
                "latency_ms": round(self.backends.converter.latency_s * 1000, 1),
                **_guard_stats(self.backends.converter),
            }
            converter = self.backends.converter
            if isinstance(converter, SupervisedConverter):
                share = converter.gate_open_share
                out["audio"]["gate_open_share"] = None if share is None else round(share, 3)
        return out


def _guard_stats(model: object) -> dict[str, int]:
    guard = getattr(model, "guard", None)
    if guard is None:
        return {}
    return {"timeouts": guard.timeouts, "restarts": guard.restarts}
