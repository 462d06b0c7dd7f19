"""AvatarVideoTrack: the camera track in, the animated avatar out, never a backlog.

Three stages, each bounded:
1. a drain task reads the inbound track as fast as aiortc decodes it and keeps only
   the newest frame (aiortc's own queue is unbounded: #642, #1192);
2. a worker thread turns it into an avatar frame (model call, colour conversion),
   falling back to the camera image for that frame if the model raises;
3. rendered frames wait in a short delay line until their playout time (capture
   time + the session's playout delay, shared with the voice); ``recv()`` hands
   the sender the newest due frame, or repeats the last one (a copy: a frame once
   returned is never changed) when the model is late, and never waits on the model
   for longer than that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.engine.adapt import Move, QualityController
from mirage.engine.delayline import DelayLine
from mirage.engine.latest import LatestSlot
from mirage.engine.rategate import EARLY_SHARE, FrameRateGate
from mirage.metrics import Metrics
from mirage.models.avatar.passthrough import fit_square
from mirage.models.base import FaceAnimator
from mirage.tracks.base import TransformTrack
from mirage.tracks.fanout import copy_frame
from mirage.tracks.sync import PlayoutClock

log = logging.getLogger(__name__)

VIDEO_RATE = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_RATE)
STALE_S = 0.1
FREEZE_S = 0.25  # a late frame is still shown rather than none new for this long


@dataclass
class Captured:
    """A decoded camera frame and the time it reached us."""

    frame: VideoFrame
    capture: float
    arrival: float


@dataclass
class Rendered:
    """An avatar frame ready to send, stamped with its input's capture time."""

    frame: VideoFrame
    capture: float
    arrival: float
    ready: float  # when the worker finished it (time.monotonic)


class AvatarVideoTrack(TransformTrack):
    kind = "video"

    def __init__(
        self,
        source: MediaStreamTrack,
        animator: FaceAnimator,
        backend: str,
        *,
        controller: QualityController,
        clock: PlayoutClock,
        metrics: Metrics,
        on_source_ended: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            source, backend, clock=clock, metrics=metrics, on_source_ended=on_source_ended
        )
        self._animator = animator
        self.controller = controller
        level = controller.level
        self.size = level.size
        self._interval = 1.0 / level.fps
        self._rate = FrameRateGate()
        self._apply_quality(level.quality)
        max_fps = max(lv.fps for lv in controller.levels)
        self._inbox: LatestSlot[Captured] = LatestSlot()
        # Room for the playout delay's worth of frames at the highest frame rate.
        capacity = max(4, int(clock.max_delay_s * max_fps) + 2)
        self._outbox: DelayLine[Rendered] = DelayLine(capacity)
        self._last: Rendered | None = None
        self._last_sent = 0.0
        self._last_new_sent = 0.0
        self._last_pts = -1
        self._new_reference: tuple[np.ndarray, concurrent.futures.Future[None]] | None = None
        self._reference_lock = threading.Lock()

    def _close_inputs(self) -> None:
        self._inbox.close()
        self._outbox.clear()

    @property
    def dropped(self) -> int:
        return self._inbox.dropped + self._outbox.overflowed + self._outbox.skipped

    # -- stage 1: keep only the newest camera frame ---------------------------------
    def _accept(self, frame: AudioFrame | VideoFrame, capture: float, arrival: float) -> None:
        assert isinstance(frame, VideoFrame)
        if self._inbox.put(Captured(frame, capture, arrival)):
            self._metrics.frames_dropped.labels("video", "input").inc()

    # -- a new reference portrait, applied by the worker between two frames ------
    async def set_reference(self, image: np.ndarray, timeout: float = 30.0) -> None:
        """Swap the portrait without a race with ``animate``; raises what the backend
        raises (e.g. ``NoFaceError``), in which case the old portrait stays."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._reference_lock:
            if self._new_reference is not None:
                self._new_reference[1].cancel()
            self._new_reference = (image, future)
        await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def _apply_new_reference(self) -> None:
        with self._reference_lock:
            pending, self._new_reference = self._new_reference, None
        if pending is None:
            return
        image, future = pending
        if not future.set_running_or_notify_cancel():
            return
        try:
            self._animator.set_reference(image)
            self._animator.reset()
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    # -- quality levels ------------------------------------------------------------
    def _apply_quality(self, quality: str) -> None:
        self._animator.set_quality(quality)

    def _apply_level(self, move: Move | None) -> None:
        level = self.controller.level
        self.size = level.size
        self._interval = 1.0 / level.fps
        self._apply_quality(level.quality)
        if move is not None:
            self._metrics.quality_moves.labels(move.direction).inc()
            log.info("video quality %s to %s: %s", move.direction, level.name, move.reason)

    def pin_level(self, index: int | None) -> None:
        """Hold a quality level (None: automatic again); applied from the next frame."""
        self.controller.pin(index)
        self._apply_level(None)

    # -- stage 2: the worker thread ---------------------------------------------
    def _work(self) -> None:
        self._apply_new_reference()
        item = self._inbox.take(timeout=0.2)
        if item is None or self._worker.stopping:
            return
        # Work at the level's frame rate, deciding as each frame arrives (a timer of our
        # own left every frame waiting half a camera interval in the slot).
        if not self._rate.admit(item.arrival, self._interval):
            self._metrics.frames_dropped.labels("video", "input").inc()
            return
        stage = self._metrics.stage_seconds
        # How long the newest camera frame waited in the slot for the worker.
        stage.labels("video", "queue").observe(time.monotonic() - item.arrival)
        t0 = time.perf_counter()
        rgb = item.frame.to_ndarray(format="rgb24")
        t1 = time.perf_counter()
        try:
            out = self._animator.animate(rgb, self.size)
        except Exception as exc:
            self.errors += 1
            self._metrics.model_errors.labels("video", self._backend).inc()
            log.warning("face backend %s failed (%s); sending the camera frame", self._backend, exc)
            out = fit_square(rgb, self.size)
        t2 = time.perf_counter()
        frame = VideoFrame.from_ndarray(out, format="rgb24").reformat(format="yuv420p")
        t3 = time.perf_counter()
        stage.labels("video", "decode").observe(t1 - t0)
        stage.labels("video", "animate").observe(t2 - t1)
        # Backends that time their own stages (face tracking, warp, generate...) say so
        # in ``stage_seconds``; those land in the same histogram as "animate.<stage>".
        for name, seconds in self._animator.stage_seconds.items():
            stage.labels("video", f"animate.{name}").observe(seconds)
        stage.labels("video", "convert").observe(t3 - t2)
        move = self.controller.record(t3 - t0, time.monotonic())
        if move is not None:
            self._apply_level(move)
        ready = time.monotonic()
        self._clock.observe("video", ready - item.capture, inbound_s=item.arrival - item.capture)
        if self._outbox.put(Rendered(frame, item.capture, item.arrival, ready)):
            self._metrics.frames_dropped.labels("video", "output").inc()
        self._wake_recv()

    def _stale(self, item: Rendered) -> bool:
        """Input that reached us late (a burst after a network stall) and missed its slot
        is dropped; a slow model's frames are shown late rather than never."""
        now = time.monotonic()
        if self._last_new_sent and now - self._last_new_sent > FREEZE_S:
            # Never freeze the picture for it: on an overloaded machine every input is
            # late, and dropping them all would show nothing new at all. (Before the
            # first frame the rule stands: the burst after connecting is really stale.)
            return False
        return item.arrival - item.capture > STALE_S and self._due(item.capture) < now - STALE_S

    def _due(self, capture: float) -> float:
        """Playout time of a video frame: ahead of the voice by the video's longer way
        to the viewer (codecs, the receiver's jitter buffer and compositor)."""
        return self._clock.due(capture, "video")

    # -- stage 3: paced output -----------------------------------------------------
    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        # Never faster than the rate gate lets frames in (it takes two of every three
        # frames of a 30 fps camera for 20 fps, 33 ms apart: a cap above that held each
        # such frame back)...
        # (measured from the last *new* frame: a repeat must not hold back a fresh one)
        earliest = self._last_new_sent + EARLY_SHARE * self._interval
        delay = earliest - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # ...release the newest frame whose playout time has come, and when none comes
        # within 1.5 frame intervals, repeat the last one.
        while True:
            now = time.monotonic()
            item, skipped = self._outbox.take_due(now, self._due, self._stale)
            if skipped:
                self._metrics.frames_dropped.labels("video", "late").inc(skipped)
            if item is not None:
                break
            wake = None if self._last is None else self._last_sent + 1.5 * self._interval
            head = self._outbox.next_capture()
            if head is not None:
                due = self._due(head)
                wake = due if wake is None else min(wake, due)
            if wake is not None and wake <= now:
                break  # time to repeat the last frame
            self._ready.clear()
            try:
                timeout = None if wake is None else wake - now
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            if self.readyState != "live":
                raise MediaStreamError
        now = time.monotonic()
        if item is not None:
            self._last = item
            self._last_new_sent = now
            pts = self._clock.ticks(item.capture, VIDEO_RATE)
            self._metrics.frame_latency.labels("video").observe(now - item.capture)
            # Ready → sent: the playout hold (lips waiting for the voice, or the video
            # waiting for its own p95) plus the sender's wake-up.
            self._metrics.stage_seconds.labels("video", "held").observe(now - item.ready)
            self.output_age = now - item.capture
        else:
            assert self._last is not None
            self._metrics.frames_filled.labels("video").inc()
            pts = self._last_pts + round((now - self._last_sent) * VIDEO_RATE)
        pts = max(pts, self._last_pts + 1)
        # A frame once returned is its consumer's (an encoder rebases its pts): a repeat
        # is a new frame with the same picture, never the old one restamped.
        frame = self._last.frame if item is not None else copy_frame(self._last.frame)
        assert isinstance(frame, VideoFrame)
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        self._last_pts = pts
        self._last_sent = now
        self.frames_out += 1
        self._metrics.frames_out.labels("video").inc()
        return frame
