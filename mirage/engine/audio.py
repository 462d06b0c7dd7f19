"""The audio engine, free of WebRTC: mic chunks in, converted 48 kHz audio out.

Input chunks (any rate, already mono float32) are resampled to the converter's
rate, cut into the converter's blocks, converted, resampled to 48 kHz and put in
an output ring bounded in milliseconds. Each output sample knows the time its
input sample arrived, so the track can stamp frames with capture time and the
metrics can measure true latency.
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mirage.engine.resample import Resampler
from mirage.models.base import VoiceConverter

OUTPUT_RATE = 48000


@dataclass
class Chunk:
    samples: np.ndarray  # float32 mono
    rate: int
    capture: float  # capture time of the chunk's last sample
    arrival: float | None = None  # when it reached us (None: at its capture time)


class CaptureTimeline:
    """Maps an input sample position to its capture time (last ~4 s of chunks kept)."""

    def __init__(self, rate: int, keep: int = 200) -> None:
        self._rate = rate
        self._ends: collections.deque[int] = collections.deque(maxlen=keep)
        self._times: collections.deque[float] = collections.deque(maxlen=keep)

    def add(self, end_position: int, capture: float) -> None:
        self._ends.append(end_position)
        self._times.append(capture)

    def at(self, position: int) -> float:
        """Capture time of sample ``position`` (1-based end positions), interpolated
        back from the capture time of its chunk's last sample."""
        if not self._ends:
            return time.monotonic()
        i = min(bisect.bisect_left(self._ends, position), len(self._ends) - 1)
        return self._times[i] - (self._ends[i] - position) / self._rate


class OutputRing:
    """Converted 48 kHz samples waiting to be sent, at most ``max_samples`` of them.

    When it overflows the oldest samples go: after a stall the stream resumes at
    the live edge instead of carrying a backlog.
    """

    def __init__(self, max_samples: int) -> None:
        self._max = max_samples
        self._chunks: collections.deque[tuple[np.ndarray, float]] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self.dropped_samples = 0

    def push(self, samples: np.ndarray, capture: float) -> int:
        """Append; return how many old samples were dropped to stay within bounds."""
        with self._lock:
            self._chunks.append((samples, capture))
            self._size += len(samples)
            dropped = 0
            while self._size > self._max:
                head, cap = self._chunks[0]
                cut = min(len(head), self._size - self._max)
                if cut == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = (head[cut:], cap + cut / OUTPUT_RATE)
                self._size -= cut
                dropped += cut
            self.dropped_samples += dropped
            return dropped

    def __len__(self) -> int:
        return self._size

    def peek_capture(self) -> float | None:
        """The capture time of the oldest waiting sample."""
        with self._lock:
            return self._chunks[0][1] if self._chunks else None

    def drop(self, n: int) -> int:
        """Discard up to ``n`` of the oldest samples (to catch up with the live edge)."""
        dropped, _ = self.pop(n)
        return len(dropped)

    def pop(self, n: int) -> tuple[np.ndarray, float | None]:
        """Up to ``n`` samples, and the capture time of the first one (None if empty)."""
        with self._lock:
            parts: list[np.ndarray] = []
            capture: float | None = None
            need = n
            while need and self._chunks:
                head, cap = self._chunks[0]
                if capture is None:
                    capture = cap
                take = head[:need]
                parts.append(take)
                if len(take) == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = (head[need:], cap + need / OUTPUT_RATE)
                need -= len(take)
            self._size -= n - need
            out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            return out, capture


class VoicePipeline:
    """Chunk in → converter blocks → 48 kHz ring; runs on the caller's thread."""

    def __init__(
        self,
        converter: VoiceConverter,
        ring_ms: float,
        on_error: Callable[[Exception], None],
        observe: Callable[[str, float], None],
        on_ready: Callable[[float, float], None] | None = None,
    ) -> None:
        self.converter = converter
        self._on_error = on_error
        self._observe = observe
        self._on_ready = on_ready  # (capture→ready latency, inbound delay) of each block
        self._inbound = 0.0  # how late the newest chunk arrived after its capture
        self._to_model: Resampler | None = None
        self._to_output = Resampler(converter.sample_rate, OUTPUT_RATE)
        self._pending = np.zeros(0, np.float32)
        # Positions count samples since the start at each stage's own rate. A streaming
        # resampler delivers late but time-aligned, so a position maps across rates by
        # its rate alone; its hold-back must not be mistaken for delay.
        self._in_position = 0  # input samples (input rate) seen so far
        self._pushed = 0  # 48 kHz samples put in the ring so far
        self._latency_s = converter.latency_s
        self._timeline = CaptureTimeline(OUTPUT_RATE)
        block_48k = converter.block_size * OUTPUT_RATE // converter.sample_rate
        self.ring = OutputRing(max_samples=block_48k + round(ring_ms * OUTPUT_RATE / 1000))

    def push(self, chunk: Chunk) -> None:
        if self._to_model is None or self._to_model.rate_in != chunk.rate:
            self._to_model = Resampler(chunk.rate, self.converter.sample_rate)
            # Output stands for input this much older: both resamplers' group delays
            # (1 ms each for 48 ↔ 16 kHz) and the converter's algorithmic delay.
            self._latency_s = (
                self.converter.latency_s + self._to_model.delay_s + self._to_output.delay_s
            )
        t0 = time.perf_counter()
        x = self._to_model(chunk.samples.astype(np.float32, copy=False))
        self._observe("resample", time.perf_counter() - t0)
        # The timeline counts 48 kHz samples whatever the input rate.
        self._in_position += round(len(chunk.samples) * OUTPUT_RATE / chunk.rate)
        self._timeline.add(self._in_position, chunk.capture)
        self._inbound = 0.0 if chunk.arrival is None else chunk.arrival - chunk.capture
        self._pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        size = self.converter.block_size
        while len(self._pending) >= size:
            block, self._pending = self._pending[:size], self._pending[size:]
            self._convert(np.ascontiguousarray(block))

    def _convert(self, block: np.ndarray) -> None:
        t0 = time.perf_counter()
        try:
            out = np.asarray(self.converter.convert(block), dtype=np.float32)
            if out.shape != block.shape:
                raise ValueError(f"converter returned {out.shape}, expected {block.shape}")
        except Exception as exc:
            self._on_error(exc)
            out = block
        t1 = time.perf_counter()
        self._observe("convert", t1 - t0)
        out48 = self._to_output(out)
        # The first sample pushed now stands for the input heard `_latency_s` before it.
        source = self._pushed - round(self._latency_s * OUTPUT_RATE) + 1
        capture = self._timeline.at(max(1, source))  # before that: the converter's fill
        self._pushed += len(out48)
        self.ring.push(out48, capture)
        self._observe("resample", time.perf_counter() - t1)
        if self._on_ready is not None:
            self._on_ready(time.monotonic() - capture, self._inbound)
