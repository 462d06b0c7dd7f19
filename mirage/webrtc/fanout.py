"""One session's output tracks shared by every consumer: its own peer and WHEP viewers.

An output track (``AvatarVideoTrack``, ``VoiceAudioTrack``) paces itself in
``recv()`` and must have exactly one reader. A ``Hub`` is that reader: one task
per output track, started with the session, pulling whether or not anybody
watches (so a WHIP session with no viewer runs at its own pace and never backs
up), and handing each frame to every tap of its ``FanOut`` (``tracks/fanout.py``,
the same fan-out the client uses). A tap is the track a peer connection sends: the
newest video frame (latest wins), 100 ms of audio (an encoder hiccup must not cost
a syllable), and a consumer that fell behind resumes at the live edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from mirage.metrics import Metrics
from mirage.tracks.fanout import FanOut, Tap, TapBound, pump

log = logging.getLogger(__name__)

#: A frame that waited longer than this for its consumer is dropped when a newer one
#: waits behind it: the output track released it at its playout time, and audio
#: sent later than that would drift from the video (the tracks' own sync tolerance).
MAX_WAIT_S = 0.04
#: What a tap of an output track holds: five 20 ms audio frames, the newest video frame.
OUTPUT_BOUND = TapBound(audio_ms=100.0, max_wait_s=MAX_WAIT_S, start_live=True)


class Hub:
    """The single reader of one output track."""

    def __init__(self, source: MediaStreamTrack, metrics: Metrics) -> None:
        self.kind = source.kind
        self.source = source
        dropped = metrics.frames_dropped.labels(self.kind, "fanout")
        self.fanout = FanOut(self.kind, OUTPUT_BOUND, on_drop=dropped.inc)
        self._task: asyncio.Task[None] | None = None

    @property
    def ended(self) -> bool:
        return self.fanout.ended

    @property
    def frames(self) -> int:
        return self.fanout.frames

    def tap(self) -> Tap:
        return self.fanout.subscribe()

    def start(self) -> None:
        if self._task is None and not self.ended:
            self._task = asyncio.create_task(self._run(), name=f"mirage-hub-{self.kind}")

    async def _run(self) -> None:
        try:
            await pump(self.source, self.fanout, end=False)
        except Exception:  # pragma: no cover - a bug in a track must still end the taps
            log.exception("output %s track failed", self.kind)
        finally:
            self.fanout.end()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.fanout.end()


class Viewer(Protocol):
    """Anything else watching the session (a WHEP viewer) that ends with it."""

    async def close(self, reason: str) -> None: ...


class Fanout:
    """A session's hubs (one per output track) and its extra viewers."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._hubs: dict[int, Hub] = {}
        self.viewers: dict[str, Viewer] = {}
        self._started = False
        self.closed = False

    def subscribe(self, track: MediaStreamTrack) -> Tap:
        """A new tap on ``track`` (its hub is made on first use)."""
        hub = self._hubs.get(id(track))
        if hub is None:
            hub = self._hubs[id(track)] = Hub(track, self._metrics)
            if self._started:
                hub.start()
        return hub.tap()

    def start(self, pc: RTCPeerConnection) -> None:
        """Start pulling every output; release the taps ``pc`` will never send (a
        sendonly WHIP publisher receives nothing)."""
        self._started = True
        for transceiver in pc.getTransceivers():
            track = transceiver.sender.track
            if isinstance(track, Tap) and "send" not in (transceiver.currentDirection or ""):
                track.stop()
        for hub in self._hubs.values():
            hub.start()

    async def close(self) -> None:
        """End every viewer and every hub (idempotent)."""
        if self.closed:
            return
        self.closed = True
        viewers = list(self.viewers.values())
        await asyncio.gather(*(v.close("session ended") for v in viewers))
        self.viewers.clear()
        await asyncio.gather(*(hub.close() for hub in self._hubs.values()))


__all__ = ["MAX_WAIT_S", "OUTPUT_BOUND", "Fanout", "Hub", "Tap", "Viewer"]
