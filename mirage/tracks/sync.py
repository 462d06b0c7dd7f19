"""The session's playout clock: one epoch and one playout delay for both tracks.

Every output frame carries the capture time of the input it came from and is
released at capture time + ``delay_s``, the same delay for audio and video, so
lips and voice leave the server together. The delay follows the slower path:
the p95 of each track's capture→ready latency over a recent window, plus a small
margin. It rises at once (a frame must never be released before it is ready)
and falls slowly (so it does not oscillate with every jitter spike).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field


@dataclass
class PlayoutClock:
    enabled: bool = True
    max_delay_s: float = 0.5
    margin_s: float = 0.005
    fall_per_s: float = 0.02  # how fast the delay may shrink when latency drops
    epoch: float = field(default_factory=time.monotonic)
    delay_s: float = 0.0
    _windows: dict[str, collections.deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _updated: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic()

    def ticks(self, capture: float, rate: int) -> int:
        """The timestamp, in 1/``rate`` s, of an output whose input was captured at ``capture``."""
        return round((capture - self.epoch + self.delay_s) * rate)

    def due(self, capture: float) -> float:
        """When an output whose input was captured at ``capture`` should leave."""
        return capture + self.delay_s

    def observe(self, track: str, latency_s: float, window: int = 60) -> None:
        """Record one capture→ready latency of ``track`` (any thread) and retune the delay."""
        if not self.enabled:
            return
        with self._lock:
            samples = self._windows.setdefault(track, collections.deque(maxlen=window))
            samples.append(latency_s)
            target = min(self.max_delay_s, max(_p95(s) for s in self._windows.values()))
            target += self.margin_s
            now = time.monotonic()
            if target >= self.delay_s:
                self.delay_s = min(target, self.max_delay_s)
            else:
                fall = self.fall_per_s * (now - self._updated)
                self.delay_s = max(target, self.delay_s - fall)
            self._updated = now

    def latency_p95(self, track: str) -> float | None:
        with self._lock:
            samples = self._windows.get(track)
            return _p95(samples) if samples else None


def _p95(samples: collections.deque[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
