"""A session's output tracks, made as the peer's inbound tracks arrive.

The first inbound video track becomes an ``AvatarVideoTrack``, the first audio
track a ``VoiceAudioTrack``; each output goes back to the peer through a tap of
the session's ``Fanout`` (so WHEP viewers can watch too). A source track that
ends ends the session (``on_ended``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection

from mirage.config import Settings
from mirage.engine.backends import Backends
from mirage.metrics import Metrics
from mirage.tracks.audio import VoiceAudioTrack
from mirage.tracks.factory import avatar_track, voice_track
from mirage.tracks.sync import PlayoutClock
from mirage.tracks.video import AvatarVideoTrack
from mirage.webrtc.fanout import Fanout


class PeerTracks:
    """The avatar and voice tracks of one peer connection."""

    def __init__(
        self,
        backends: Backends,
        settings: Settings,
        clock: PlayoutClock,
        metrics: Metrics,
        outputs: Fanout,
        on_ended: Callable[[str], None],
    ) -> None:
        self._backends = backends
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._outputs = outputs
        self._on_ended = on_ended
        self.pinned_level: int | None = None  # None: adaptive quality
        self.video: AvatarVideoTrack | None = None
        self.audio: VoiceAudioTrack | None = None

    def wire(self, pc: RTCPeerConnection) -> None:
        """Hook ``pc``'s track event; call before ``setRemoteDescription``."""

        @pc.on("track")
        def on_track(track: Any) -> None:
            self.add(pc, track)

    def add(self, pc: RTCPeerConnection, track: Any) -> None:
        """One inbound track → its output track, sent back on ``pc`` (extras ignored)."""
        b, s, c, m = self._backends, self._settings, self._clock, self._metrics
        if track.kind == "video" and self.video is None:
            self.video = avatar_track(
                track,
                b,
                s,
                c,
                m,
                self.pinned_level,
                on_source_ended=lambda: self._on_ended("camera track ended"),
            )
            pc.addTrack(self._outputs.subscribe(self.video))
        elif track.kind == "audio" and self.audio is None:
            self.audio = voice_track(
                track, b, s, c, m, on_source_ended=lambda: self._on_ended("microphone track ended")
            )
            pc.addTrack(self._outputs.subscribe(self.audio))

    @property
    def tracks(self) -> list[AvatarVideoTrack | VoiceAudioTrack]:
        return [t for t in (self.video, self.audio) if t is not None]

    def start(self) -> None:
        """Start each track's drain and worker."""
        for track in self.tracks:
            track.start()

    def stop(self) -> None:
        """End the tracks now (non-blocking); ``wait_stopped`` waits for their workers."""
        for track in self.tracks:
            track.stop()

    async def wait_stopped(self) -> bool:
        """Each worker thread's end, awaited off the event loop (bounded)."""
        done = await asyncio.gather(*(t.wait_stopped() for t in self.tracks))
        return all(done)


__all__ = ["PeerTracks"]
