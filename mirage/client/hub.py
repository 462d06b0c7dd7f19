"""Bounded fan-out of one media stream: the client's joint between sources, peer
connections and sinks.

A ``Hub`` is fed frames (by a file reader, a drained device track or a drained
remote track) and hands each to every subscriber: ``BoundedTrack`` s that a peer
connection or the user reads, and listeners (sinks). Nothing in it grows: a
video subscriber keeps only the newest frame, an audio one at most ``max_ms``
(oldest dropped, counted). Audio is resampled to 48 kHz if need be. The hub restamps every frame on one ``Timeline``
shared by a client's audio and video, so timestamps stay monotonic and in step
across reconnections, file loops and sources that restart their own clocks.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import time
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

Frame = AudioFrame | VideoFrame
VIDEO_RATE = 90000
AUDIO_RATE = 48000
GAP_S = 0.1  # audio this far behind the wall clock jumps forward (a gap, not jitter)


class Timeline:
    """One wall-clock origin for a client's audio and video timestamps."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start


class BoundedTrack(MediaStreamTrack):
    """A track fed by ``push``: video keeps the newest frame, audio at most ``max_ms``."""

    def __init__(
        self,
        kind: str,
        max_ms: float = 200.0,
        on_stop: Callable[[BoundedTrack], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._max_s = max_ms / 1000
        self._frames: collections.deque[Frame] = collections.deque()
        self._seconds = 0.0
        self._ready = asyncio.Event()
        self._ended = False
        self._on_stop = on_stop
        self.dropped = 0

    def push(self, frame: Frame) -> None:
        if self._ended or self.readyState != "live":
            return
        if isinstance(frame, VideoFrame):
            self.dropped += len(self._frames)
            self._frames.clear()
            self._frames.append(frame)
        else:
            self._frames.append(frame)
            self._seconds += frame.samples / frame.sample_rate
            while self._seconds > self._max_s and len(self._frames) > 1:
                old = self._frames.popleft()
                assert isinstance(old, AudioFrame)
                self._seconds -= old.samples / old.sample_rate
                self.dropped += 1
        self._ready.set()

    def end(self) -> None:
        """No more frames: ``recv`` raises once the buffered ones are read."""
        self._ended = True
        self._ready.set()

    async def recv(self) -> Frame:
        while not self._frames:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        if isinstance(frame, AudioFrame):
            self._seconds = max(0.0, self._seconds - frame.samples / frame.sample_rate)
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()
        if self._on_stop is not None:
            self._on_stop(self)


class RateMeter:
    """Events per second over the last ``window_s``."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self) -> None:
        now = time.monotonic()
        self._times.append(now)
        while self._times[0] < now - self._window_s:
            self._times.popleft()

    def rate(self) -> float:
        now = time.monotonic()
        while self._times and self._times[0] < now - self._window_s:
            self._times.popleft()
        return len(self._times) / self._window_s


class Hub:
    """One stream (``kind``) → bounded subscriber tracks and listener callbacks."""

    def __init__(self, kind: str, timeline: Timeline, max_audio_ms: float = 200.0) -> None:
        self.kind = kind
        self.timeline = timeline
        self._max_audio_ms = max_audio_ms
        self._tracks: list[BoundedTrack] = []
        self._listeners: list[Callable[[Frame], None]] = []
        self._samples = 0  # audio: the next frame's timestamp
        self._last_pts = -1
        self._resampler: av.AudioResampler | None = None
        self.ended = False
        self.frames = 0
        self.meter = RateMeter()

    def subscribe(self) -> BoundedTrack:
        """A new track carrying this stream from now on (stop it to unsubscribe)."""
        track = BoundedTrack(self.kind, self._max_audio_ms, on_stop=self._forget)
        if self.ended:
            track.end()
        self._tracks.append(track)
        return track

    def listen(self, callback: Callable[[Frame], None]) -> None:
        """Call ``callback(frame)`` on the loop for every frame (it must not block)."""
        self._listeners.append(callback)

    def _forget(self, track: BoundedTrack) -> None:
        if track in self._tracks:
            self._tracks.remove(track)

    def push(self, frame: Frame) -> None:
        if isinstance(frame, AudioFrame) and frame.sample_rate != AUDIO_RATE:
            if self._resampler is None:  # any source: the client's audio runs at 48 kHz
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            frame.pts = None  # the hub restamps; the resampler must not rebase
            for out in self._resampler.resample(frame):
                self._deliver(out)
            return
        self._deliver(frame)

    def _deliver(self, frame: Frame) -> None:
        self._restamp(frame)
        self.frames += 1
        self.meter.tick()
        for track in list(self._tracks):
            track.push(frame)
        for listener in self._listeners:
            listener(frame)

    def _restamp(self, frame: Frame) -> None:
        if isinstance(frame, VideoFrame):
            pts = max(self._last_pts + 1, round(self.timeline.now() * VIDEO_RATE))
            frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        else:
            wall = round(self.timeline.now() * AUDIO_RATE)
            if wall - self._samples > GAP_S * AUDIO_RATE:
                self._samples = wall - frame.samples  # after a gap: back in step with video
            pts = self._samples
            self._samples += frame.samples
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        frame.pts = pts
        self._last_pts = pts

    def end(self) -> None:
        self.ended = True
        for track in list(self._tracks):
            track.end()


async def pump(track: MediaStreamTrack, hub: Hub, *, end_hub: bool = True) -> None:
    """Read ``track`` as fast as it delivers into ``hub`` (aiortc's receive queues and
    ``MediaPlayer`` 's are unbounded: a track nobody drains grows without limit)."""
    try:
        while True:
            frame = await track.recv()
            if isinstance(frame, (AudioFrame, VideoFrame)):
                hub.push(frame)
    except MediaStreamError:
        if end_hub:
            hub.end()
