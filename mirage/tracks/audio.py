"""VoiceAudioTrack: the microphone in, the converted voice out, paced in 20 ms frames.

A drain task turns each inbound frame into mono float32 and hands it to a worker
thread through a queue bounded in milliseconds (``engine/dropoldest.py``: oldest
dropped, counted). The
worker runs the ``VoicePipeline``. ``recv()`` sends one 20 ms frame per 20 ms of
wall clock, and silence when the converter is late, so the sender never stalls.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from mirage.engine.audio import OUTPUT_RATE, Chunk, VoicePipeline
from mirage.engine.dropoldest import DropOldest
from mirage.metrics import Metrics
from mirage.models.base import VoiceConverter
from mirage.tracks.base import TransformTrack
from mirage.tracks.pcm import to_mono_float
from mirage.tracks.sync import PlayoutClock

log = logging.getLogger(__name__)

FRAME_SAMPLES = OUTPUT_RATE // 50  # 20 ms
AUDIO_TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)
INBOX_MS = 400.0  # input waiting for the worker beyond this is stale
SYNC_TOLERANCE_S = 0.03  # audio this far past its playout time is dropped
# How long past its slot a frame waits for converted audio before silence goes out
# instead: as long as late audio is still sent, or every late block would cost a gap
# of silence *and* arrive anyway.
LATE_S = SYNC_TOLERANCE_S
MAX_EARLY_S = 0.04  # audio due later than this waits behind silence


class _Inbox:
    """Thread-safe FIFO of input chunks bounded in milliseconds; drops the oldest."""

    def __init__(self, max_ms: float) -> None:
        self._items: DropOldest[Chunk] = DropOldest(
            max_s=max_ms / 1000, seconds_of=lambda c: len(c.samples) / c.rate
        )
        self._cond = threading.Condition()

    @property
    def dropped(self) -> int:
        return self._items.dropped

    def put(self, chunk: Chunk) -> int:
        with self._cond:
            dropped = self._items.append(chunk)
            self._cond.notify()
            return dropped

    def take_all(self, timeout: float) -> list[Chunk]:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.take_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class VoiceAudioTrack(TransformTrack):
    kind = "audio"

    def __init__(
        self,
        source: MediaStreamTrack,
        converter: VoiceConverter,
        backend: str,
        *,
        clock: PlayoutClock,
        metrics: Metrics,
        backlog_ms: float,
        on_source_ended: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(
            source, backend, clock=clock, metrics=metrics, on_source_ended=on_source_ended
        )
        self._inbox = _Inbox(INBOX_MS)
        # Room for the backlog bound plus the longest playout delay the clock may set.
        ring_ms = backlog_ms + (clock.max_delay_s * 1000 if clock.enabled else 0.0)
        self.pipeline = VoicePipeline(
            converter,
            ring_ms,
            self._on_error,
            self._observe,
            on_ready=lambda latency, inbound: clock.observe("audio", latency, inbound),
        )
        self._sent = 0  # samples sent: the output timestamp
        self._next_due: float | None = None
        self._ring_dropped = 0

    def _close_inputs(self) -> None:
        self._inbox.wake()

    # -- the worker's callbacks ---------------------------------------------------
    def _on_error(self, exc: Exception) -> None:
        self.errors += 1
        self._metrics.model_errors.labels("audio", self._backend).inc()
        log.warning("voice backend %s failed (%s); sending the input block", self._backend, exc)

    def _observe(self, stage: str, seconds: float) -> None:
        histogram = self._metrics.stage_seconds
        histogram.labels("audio", stage).observe(seconds)
        if stage == "convert":  # the chain's own stages, as "convert.<stage>"
            for name, inner in self.pipeline.converter.stage_seconds.items():
                histogram.labels("audio", f"convert.{name}").observe(inner)

    # -- stage 1: mono float chunks into a bounded inbox ---------------------------------
    def _accept(self, frame: AudioFrame | VideoFrame, capture: float, arrival: float) -> None:
        assert isinstance(frame, AudioFrame)
        chunk = Chunk(to_mono_float(frame), frame.sample_rate, capture, arrival=arrival)
        dropped = self._inbox.put(chunk)
        if dropped:
            self._metrics.frames_dropped.labels("audio", "input").inc(dropped)

    # -- stage 2: worker ------------------------------------------------------------------
    def _work(self) -> None:
        chunks = self._inbox.take_all(timeout=0.2)
        if not chunks or self._worker.stopping:
            return
        for chunk in chunks:
            self.pipeline.push(chunk)
        if len(self.pipeline.ring) >= FRAME_SAMPLES:
            self._wake_recv()

    async def _wait_for_audio(self, until: float | None) -> bool:
        """Wait until a whole frame of converted audio is ready (True) or ``until`` passes."""
        ring = self.pipeline.ring
        while len(ring) < FRAME_SAMPLES:
            self._ready.clear()
            timeout = None if until is None else max(0.0, until - time.monotonic())
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            if self.readyState != "live":
                raise MediaStreamError
        return True

    def _drop_late(self, now: float) -> None:
        """Discard audio whose playout time is already past (a stall's backlog)."""
        ring = self.pipeline.ring
        head = ring.peek_capture()
        if head is None:
            return
        late = self._clock.due(head, "audio") - now
        if late < -SYNC_TOLERANCE_S:
            # Whole frames only: the ring's frames start where the input's 20 ms chunks
            # do, so each is complete the moment its chunk is converted. Cut mid-frame,
            # every later frame would wait for a piece of the next chunk: up to a block
            # later than its due, which the clock (timing blocks, not frames) never sees.
            frames = min(-(late // (FRAME_SAMPLES / OUTPUT_RATE)), len(ring) // FRAME_SAMPLES)
            dropped = ring.drop(int(frames) * FRAME_SAMPLES)
            self._metrics.frames_dropped.labels("audio", "late").inc(dropped / FRAME_SAMPLES)

    async def _next_samples(self, grid: float) -> tuple[np.ndarray, float | None]:
        """The next frame's samples (empty for silence), sent at their playout time when
        the clock syncs, else on a free-running 20 ms grid."""
        ring = self.pipeline.ring
        send_at = grid
        have = await self._wait_for_audio(grid + LATE_S)
        if have and self._clock.enabled:
            self._drop_late(time.monotonic())
            have = await self._wait_for_audio(grid + LATE_S)
            head = ring.peek_capture()
            if have and head is not None:
                due = self._clock.due(head, "audio")
                if due - time.monotonic() > MAX_EARLY_S:
                    have = False  # the shared delay grew: silence until the audio is due
                else:
                    send_at = due
        wait = send_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        now = time.monotonic()
        self._next_due = max(send_at, now - 0.1) + FRAME_SAMPLES / OUTPUT_RATE
        if have:
            return ring.pop(FRAME_SAMPLES)
        return np.zeros(0, np.float32), None

    # -- stage 3: paced output -------------------------------------------------------------
    async def recv(self) -> AudioFrame:
        """One 20 ms frame at a time: converted audio at its playout time (capture +
        the shared delay), silence when the converter is more than ``LATE_S`` late."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._next_due is None:  # the first frame waits for the first audio
            await self._wait_for_audio(None)
            self._next_due = time.monotonic()
        samples, capture = await self._next_samples(self._next_due)
        now = time.monotonic()
        if capture is not None:
            self._metrics.frame_latency.labels("audio").observe(now - capture)
            self.output_age = now - capture
        if len(samples) < FRAME_SAMPLES:
            self._metrics.frames_filled.labels("audio").inc()
            samples = np.concatenate([samples, np.zeros(FRAME_SAMPLES - len(samples), np.float32)])
        ring = self.pipeline.ring
        if ring.dropped_samples != self._ring_dropped:
            frames = (ring.dropped_samples - self._ring_dropped) / FRAME_SAMPLES
            self._metrics.frames_dropped.labels("audio", "output").inc(frames)
            self._ring_dropped = ring.dropped_samples
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = OUTPUT_RATE
        frame.pts = self._sent
        frame.time_base = AUDIO_TIME_BASE
        self._sent += FRAME_SAMPLES
        self.frames_out += 1
        self._metrics.frames_out.labels("audio").inc()
        return frame
