"""One stream handed to many consumers, none of which can hold up another or change the
frames another reads: the server's output tracks to its peer and WHEP viewers
(``webrtc/fanout.py``) and the client's hubs between sources, connections and sinks
(``client/hub.py``) are both a ``FanOut``.

A ``FanOut`` is fed frames (``push``, or ``pump`` reading a track as fast as it
delivers) and gives each to every ``Tap`` and listener. A tap is a track: a
``DropOldest`` queue that keeps the newest video frame only, and audio up to a bound
in milliseconds, so a slow consumer loses its oldest frames (counted) instead of
growing a backlog. aiortc's ``MediaRelay`` is not used: its buffered mode is an
unbounded queue, and its unbuffered mode keeps one audio frame only.

Each consumer gets its own frame object. An encoder changes the frame it is given
(PyAV rebases ``pts``/``time_base`` to the codec's time base while aiortc reads
them, and aiortc sets ``pict_type``), so two encoders must never share one; the
first consumer gets the frame itself, every other one a copy (a 512² video frame
costs ~0.4 ms; none with a single consumer). Producers keep their side: a track never
changes a frame after returning it from ``recv()`` (``tracks/video.py`` copies a
frame it repeats).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.engine.dropoldest import DropOldest

Frame = AudioFrame | VideoFrame


@dataclass(frozen=True)
class TapBound:
    """How much a tap holds, and how it treats a consumer that fell behind."""

    audio_ms: float = 200.0  # audio held; video keeps the newest frame only
    max_wait_s: float | None = None  # a frame older than this goes when a newer one waits
    start_live: bool = False  # the first recv() skips what queued before it


def copy_frame(frame: Frame) -> Frame:
    """A new frame with ``frame``'s content and timing, for a consumer of its own."""
    copy: Frame
    if isinstance(frame, VideoFrame):
        copy = VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    else:
        copy = AudioFrame.from_ndarray(
            frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
        )
        copy.sample_rate = frame.sample_rate
    copy.pts = frame.pts
    if frame.time_base is not None:
        copy.time_base = frame.time_base
    return copy


def _seconds(item: tuple[Frame, float]) -> float:
    frame = item[0]
    if not isinstance(frame, AudioFrame):
        return 0.0
    return frame.samples / (frame.sample_rate or 48000)  # no rate given: the WebRTC rate


class Tap(MediaStreamTrack):
    """One consumer's track of a ``FanOut``: a bounded queue, oldest dropped."""

    def __init__(
        self,
        kind: str,
        bound: TapBound,
        *,
        on_drop: Callable[[int], None] | None = None,
        on_stop: Callable[[Tap], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._bound = bound
        self._items: DropOldest[tuple[Frame, float]] = (
            DropOldest(max_items=1)
            if kind == "video"
            else DropOldest(max_s=bound.audio_ms / 1000, seconds_of=_seconds)
        )
        self._event = asyncio.Event()
        self._ended = False
        self._started = False
        self._on_drop = on_drop
        self._on_stop = on_stop
        self.dropped = 0

    def push(self, frame: Frame) -> int:
        """Queue ``frame`` (with its arrival time); how many older frames that dropped."""
        if self._ended or self.readyState != "live":
            return 0
        dropped = self._items.append((frame, time.monotonic()))
        self._event.set()
        if dropped:
            self._count(dropped)
        return dropped

    def _count(self, dropped: int) -> None:
        self.dropped += dropped
        if self._on_drop is not None:
            self._on_drop(dropped)

    def end(self) -> None:
        """No more frames: ``recv`` raises once the queued ones are read."""
        self._ended = True
        self._event.set()

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._bound.start_live and not self._started:
            # What queued before the consumer began reading is old news: start live.
            self._started = True
            while len(self._items) > 1:
                self._items.popleft()
        while not self._items:
            if self._ended or self.readyState != "live":
                self.stop()
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        if self._bound.max_wait_s is not None:
            stale = time.monotonic() - self._bound.max_wait_s
            while len(self._items) > 1 and self._items[0][1] < stale:
                self._items.popleft()
                self._count(1)
        return self._items.popleft()[0]

    def stop(self) -> None:
        super().stop()
        self._items.clear()
        self._event.set()
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop(self)


class FanOut:
    """One stream (``kind``) → every tap and listener, each with its own frame object."""

    def __init__(
        self,
        kind: str,
        bound: TapBound | None = None,
        *,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.kind = kind
        self.bound = bound or TapBound()
        self._on_drop = on_drop
        self.taps: list[Tap] = []
        self._listeners: list[Callable[[Frame], None]] = []
        self.ended = False
        self.frames = 0

    def subscribe(self) -> Tap:
        """A new tap carrying this stream from now on (stop it to unsubscribe); on an
        ended stream, a tap that is already stopped."""
        tap = Tap(self.kind, self.bound, on_drop=self._on_drop, on_stop=self._forget)
        if self.ended:
            tap.stop()
        else:
            self.taps.append(tap)
        return tap

    def listen(self, callback: Callable[[Frame], None]) -> None:
        """Call ``callback(frame)`` on the loop for every frame (it must not block)."""
        self._listeners.append(callback)

    def _forget(self, tap: Tap) -> None:
        if tap in self.taps:
            self.taps.remove(tap)

    def push(self, frame: Frame) -> None:
        """Hand ``frame`` on: to the first consumer itself, to the others a copy each."""
        self.frames += 1
        shared = True
        for tap in list(self.taps):
            tap.push(frame if shared else copy_frame(frame))
            shared = False
        for listener in self._listeners:
            listener(frame if shared else copy_frame(frame))
            shared = False

    def end(self) -> None:
        self.ended = True
        for tap in list(self.taps):
            tap.end()


async def pump(track: MediaStreamTrack, fanout: FanOut, *, end: bool = True) -> None:
    """Read ``track`` as fast as it delivers into ``fanout`` (aiortc's receive queues and
    ``MediaPlayer`` 's are unbounded, and an output track paces itself for one reader:
    someone has to read each track at its own pace); ``end`` ends the fan-out with it."""
    try:
        while True:
            frame = await track.recv()
            if isinstance(frame, (AudioFrame, VideoFrame)):
                fanout.push(frame)
    except MediaStreamError:
        if end:
            fanout.end()
