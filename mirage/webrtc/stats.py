"""What a session reports: ``GET /sessions/{id}`` (``session_stats``) and its
Prometheus gauges (published by the watchdog's tick, removed when it closes).

Read-only: nothing here changes the session.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Protocol

from aiortc import RTCPeerConnection

from mirage.engine.backends import Backends
from mirage.engine.supervised import SupervisedAnimator, SupervisedConverter
from mirage.metrics import Metrics
from mirage.models.base import FaceAnimator, VoiceConverter
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.sync import PlayoutClock
from mirage.tracks.video import AvatarVideoTrack


class Reported(Protocol):
    """What the view reads of a session (``mirage.webrtc.session.Session``)."""

    id: str
    pc: RTCPeerConnection
    backends: Backends
    metrics: Metrics
    clock: PlayoutClock
    created: float

    @property
    def video(self) -> AvatarVideoTrack | None: ...

    @property
    def audio(self) -> VoiceAudioTrack | None: ...

    @property
    def viewer_count(self) -> int: ...


def video_lead_s(clock: PlayoutClock) -> float:
    """How much earlier than the voice the video leaves (its longer way to the viewer)."""
    return clock.lead("video") - clock.lead("audio")


def av_skew(
    video: AvatarVideoTrack | None, audio: VoiceAudioTrack | None, clock: PlayoutClock
) -> float | None:
    """Audio output age − video output age (s), beyond the video's intended lead:
    what the server adds to lip sync."""
    if video is None or audio is None:
        return None
    if video.output_age is None or audio.output_age is None:
        return None
    return audio.output_age - video.output_age - video_lead_s(clock)


def publish_gauges(session: Reported) -> None:
    metrics, sid = session.metrics, session.id
    metrics.playout_delay.labels(sid).set(session.clock.delay_s)
    skew = av_skew(session.video, session.audio, session.clock)
    if skew is not None:
        metrics.av_skew.labels(sid).set(skew)
    if session.video is not None:
        metrics.quality_level.labels(sid).set(session.video.controller.index)
    converter = session.backends.converter
    share = converter.gate_open_share if isinstance(converter, SupervisedConverter) else None
    if share is not None:
        metrics.voice_gate_open.labels(sid).set(share)
    strength = converter.suppressor_strength if isinstance(converter, SupervisedConverter) else None
    if strength is not None:
        metrics.suppressor_strength.labels(sid).set(strength)


def remove_gauges(metrics: Metrics, session_id: str) -> None:
    for gauge in (
        metrics.playout_delay,
        metrics.quality_level,
        metrics.av_skew,
        metrics.voice_gate_open,
        metrics.suppressor_strength,
    ):
        with contextlib.suppress(KeyError):  # never published: a session that never ran
            gauge.remove(session_id)


def session_stats(session: Reported) -> dict[str, Any]:
    backends, clock, video, audio = session.backends, session.clock, session.video, session.audio
    out: dict[str, Any] = {
        "session_id": session.id,
        "state": session.pc.connectionState,
        "face": backends.face,
        "voice": backends.voice,
        "age_s": round(time.monotonic() - session.created, 3),
        "viewers": session.viewer_count,
        "playout_delay_ms": round(clock.delay_s * 1000, 1),
        "video_lead_ms": round(video_lead_s(clock) * 1000, 1),
        "av_skew_ms": (
            None if (skew := av_skew(video, audio, clock)) is None else round(skew * 1000, 1)
        ),
        "latency_p95_ms": {
            track: round(p95 * 1000, 1)
            for track in ("video", "audio")
            if (p95 := clock.latency_p95(track)) is not None
        },
    }
    if video is not None:
        controller = video.controller
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
            "frames_in": video.frames_in,
            "frames_out": video.frames_out,
            "dropped": video.dropped,
            "errors": video.errors,
            "size": video.size,
            **_guard_stats(backends.animator),
        }
    if audio is not None:
        out["audio"] = {
            "frames_in": audio.frames_in,
            "frames_out": audio.frames_out,
            "errors": audio.errors,
            "latency_ms": round(backends.converter.latency_s * 1000, 1),
            **_guard_stats(backends.converter),
        }
        converter = backends.converter
        if isinstance(converter, SupervisedConverter):
            share = converter.gate_open_share
            out["audio"]["gate_open_share"] = None if share is None else round(share, 3)
            strength = converter.suppressor_strength
            out["audio"]["suppressor_strength"] = None if strength is None else round(strength, 3)
    return out


def _guard_stats(model: FaceAnimator | VoiceConverter) -> dict[str, int]:
    if not isinstance(model, (SupervisedAnimator, SupervisedConverter)):
        return {}
    return {"timeouts": model.guard.timeouts, "restarts": model.guard.restarts}


__all__ = [
    "Reported",
    "av_skew",
    "publish_gauges",
    "remove_gauges",
    "session_stats",
    "video_lead_s",
]
