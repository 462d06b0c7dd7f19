"""What both output tracks share: the drain of the inbound track, the worker thread,
the event the worker sets to wake ``recv()``, the counters, and an idempotent stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.engine.capture import CaptureClock
from mirage.engine.worker import Worker
from mirage.metrics import Metrics
from mirage.tracks.sync import PlayoutClock


def media_end_s(frame: AudioFrame | VideoFrame) -> float | None:
    """The media time (s) at the end of ``frame``'s content, from its timestamp."""
    if frame.pts is None or frame.time_base is None:
        return None
    start = float(frame.pts * frame.time_base)
    if isinstance(frame, AudioFrame):
        return start + frame.samples / frame.sample_rate
    return start


class TransformTrack(MediaStreamTrack):
    """An output track fed by an inbound one through a worker thread (subclasses
    implement ``_accept`` on the loop, ``_work`` in the worker, and ``recv``)."""

    def __init__(
        self,
        source: MediaStreamTrack,
        backend: str,
        *,
        clock: PlayoutClock,
        metrics: Metrics,
        on_source_ended: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._source = source
        self._backend = backend
        self._clock = clock
        self._metrics = metrics
        self._on_source_ended = on_source_ended
        self._capture_clock = CaptureClock()
        self._worker = Worker(f"mirage-{self.kind}-{self.id[:8]}", self._work)
        self._drain_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = asyncio.Event()
        self.last_input = time.monotonic()
        self.errors = 0
        self.frames_in = 0
        self.frames_out = 0
        self.output_age: float | None = None  # send time − capture time of the last new output

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._drain_task = asyncio.create_task(self._drain(), name=f"mirage-{self.kind}-drain")
        self._worker.start()

    def stop(self) -> None:
        """End the track at once (non-blocking: safe on the event loop); the worker
        thread ends after its current step, ``wait_stopped`` waits for that."""
        super().stop()
        self._close_inputs()
        self._ready.set()
        if self._drain_task is not None:
            self._drain_task.cancel()
        self._worker.request_stop()

    async def wait_stopped(self, timeout: float = 2.0) -> bool:
        """After ``stop``: the worker thread's end, awaited off the loop (bounded);
        False when it is still in a step after ``timeout``."""
        return await asyncio.to_thread(self._worker.join, timeout)

    @property
    def worker_alive(self) -> bool:
        return self._worker.alive

    async def _drain(self) -> None:
        """Read the inbound track as fast as aiortc decodes it (its queue is unbounded)."""
        try:
            while True:
                frame = await self._source.recv()
                assert isinstance(frame, (AudioFrame, VideoFrame))
                now = time.monotonic()
                self.last_input = now
                self.frames_in += 1
                self._metrics.frames_in.labels(self.kind).inc()
                capture = self._capture_clock.capture_time(now, media_end_s(frame))
                self._accept(frame, capture, now)
        except MediaStreamError:
            if self._on_source_ended is not None and self.readyState == "live":
                self._on_source_ended()

    def _wake_recv(self) -> None:
        """From the worker thread: new output is ready for ``recv``."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._ready.set)

    # -- for subclasses ---------------------------------------------------------------
    def _accept(self, frame: AudioFrame | VideoFrame, capture: float, arrival: float) -> None:
        raise NotImplementedError

    def _work(self) -> None:
        raise NotImplementedError

    def _close_inputs(self) -> None:
        """Wake the worker out of its wait (the worker is stopping)."""
