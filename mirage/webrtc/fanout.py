"""One session's output tracks shared by every consumer: its own peer and WHEP viewers.

An output track (``AvatarVideoTrack``, ``VoiceAudioTrack``) paces itself in
``recv()`` and must have exactly one reader. A ``Hub`` is that reader: one task
per output track, started with the session, pulling whether or not anybody
watches (so a WHIP session with no viewer runs at its own pace and never backs
up), and handing each frame to every ``Tap``. A tap is the track a peer
connection sends; it holds a bounded queue that drops its oldest frame: depth 1
for video (latest wins), a few 20 ms frames for audio (an encoder hiccup must
not cost a syllable). aiortc's ``MediaRelay`` is not used: its buffered mode is
an unbounded queue, and its unbuffered mode keeps one audio frame only.

Taps share the frames the hub hands out, but a video frame is first copied: the
output track re-sends its last frame object with a new ``pts`` when the model is
late, and that must not change a frame an encoder is still reading (its RTP
timestamp is read from ``pts`` after encoding). A 512² copy costs ~0.4 ms.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Protocol

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame

from mirage.metrics import Metrics

log = logging.getLogger(__name__)

#: Frames a tap may hold before dropping its oldest, per kind.
DEPTH = {"video": 1, "audio": 5}
#: A frame that waited longer than this for its consumer is dropped when a newer one
#: waits behind it: the output track released it at its playout time, and audio
#: sent later than that would drift from the video (the tracks' own sync tolerance).
MAX_WAIT_S = 0.04


class Tap(MediaStreamTrack):
    """One consumer's copy of an output track, fed by its hub."""

    def __init__(self, hub: Hub, depth: int) -> None:
        super().__init__()
        self.kind = hub.kind
        self._hub: Hub | None = hub
        self._items: collections.deque[tuple[Frame, float]] = collections.deque(maxlen=depth)
        self._event = asyncio.Event()
        self._started = False
        self.dropped = 0

    def push(self, frame: Frame) -> bool:
        """Queue ``frame``; True when that dropped the oldest queued frame."""
        full = len(self._items) == self._items.maxlen
        self._items.append((frame, time.monotonic()))
        self._event.set()
        if full:
            self.dropped += 1
        return full

    def wake(self) -> None:
        self._event.set()

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            # What queued before the consumer began reading is old news: start live.
            self._started = True
            while len(self._items) > 1:
                self._items.popleft()
        while not self._items:
            hub = self._hub
            if self.readyState != "live" or hub is None or hub.ended:
                self.stop()
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        stale = time.monotonic() - MAX_WAIT_S
        while len(self._items) > 1 and self._items[0][1] < stale:
            self._items.popleft()
            self.dropped += 1
            if self._hub is not None:
                self._hub.count_drop()
        return self._items.popleft()[0]

    def stop(self) -> None:
        super().stop()
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.taps.discard(self)
        self._items.clear()
        self._event.set()


class Hub:
    """The single reader of one output track."""

    def __init__(self, source: MediaStreamTrack, metrics: Metrics) -> None:
        self.kind = source.kind
        self.source = source
        self.taps: set[Tap] = set()
        self.ended = False
        self.frames = 0
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def tap(self) -> Tap:
        tap = Tap(self, DEPTH[self.kind])
        if self.ended:
            tap.stop()
        else:
            self.taps.add(tap)
        return tap

    def start(self) -> None:
        if self._task is None and not self.ended:
            self._task = asyncio.create_task(self._run(), name=f"mirage-hub-{self.kind}")

    async def _run(self) -> None:
        try:
            while True:
                frame = own_copy(await self.source.recv())
                self.frames += 1
                for tap in list(self.taps):
                    if tap.push(frame):
                        self.count_drop()
        except MediaStreamError:
            pass
        except Exception:  # pragma: no cover - a bug in a track must still end the taps
            log.exception("output %s track failed", self.kind)
        finally:
            self._end()

    def count_drop(self) -> None:
        self._metrics.frames_dropped.labels(self.kind, "fanout").inc()

    def _end(self) -> None:
        self.ended = True
        for tap in list(self.taps):
            tap.wake()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._end()


def own_copy(frame: object) -> Frame:
    """``frame``, or for video a copy the source can no longer change."""
    if isinstance(frame, AudioFrame):
        return frame  # a new object every time
    assert isinstance(frame, VideoFrame)
    copy = VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = frame.pts
    if frame.time_base is not None:
        copy.time_base = frame.time_base
    return copy


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


__all__ = ["DEPTH", "MAX_WAIT_S", "Fanout", "Hub", "Tap", "Viewer"]
