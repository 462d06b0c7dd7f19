"""The output tracks for a pair of backends, built by the same rules wherever they run
(a server session, the in-process relay): one playout clock shared by both tracks so
lips and voice leave together, the video leading by its codec path when sync is on."""

from __future__ import annotations

from collections.abc import Callable

from aiortc.mediastreams import MediaStreamTrack

from mirage.config import Settings
from mirage.engine.adapt import QualityController
from mirage.engine.backends import Backends
from mirage.metrics import Metrics
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.sync import PlayoutClock
from mirage.tracks.video import AvatarVideoTrack


def playout_clock(settings: Settings) -> PlayoutClock:
    clock = PlayoutClock(enabled=settings.sync, max_delay_s=settings.max_playout_delay_ms / 1000)
    clock.set_downstream("video", video_codec_lead_s(settings))
    return clock


def video_codec_lead_s(settings: Settings) -> float:
    """The video's longer way through the codecs than Opus's (before any receiver report)."""
    return min(settings.max_playout_delay_ms / 1000, max(0.0, settings.video_lead_ms / 1000))


def avatar_track(
    source: MediaStreamTrack,
    backends: Backends,
    settings: Settings,
    clock: PlayoutClock,
    metrics: Metrics,
    pinned_level: int | None = None,
    on_source_ended: Callable[[], None] | None = None,
) -> AvatarVideoTrack:
    return AvatarVideoTrack(
        source,
        backends.animator,
        backends.face,
        controller=QualityController(pinned=pinned_level),
        clock=clock,
        metrics=metrics,
        on_source_ended=on_source_ended,
    )


def voice_track(
    source: MediaStreamTrack,
    backends: Backends,
    settings: Settings,
    clock: PlayoutClock,
    metrics: Metrics,
    on_source_ended: Callable[[], None] | None = None,
) -> VoiceAudioTrack:
    return VoiceAudioTrack(
        source,
        backends.converter,
        backends.voice,
        clock=clock,
        metrics=metrics,
        backlog_ms=settings.audio_backlog_ms,
        on_source_ended=on_source_ended,
    )
