"""The session's playout clock: one epoch and one playout delay for both tracks.

Every output frame carries the capture time of the input it came from and is
released at capture time + ``delay_s``, the same delay for audio and video, so
lips and voice leave the server together. The delay follows the slower path:
the p95 of each track's capture→ready latency over a recent window, plus a small
margin. It rises at once (a frame must never be released before it is ready)
and falls slowly (so it does not oscillate with every jitter spike).

Each latency is split into how late the input reached us (inbound) and the rest
(our own work and algorithmic delay). The delay is p95 of our own part plus the
*median* inbound delay: a burst after a network stall is late on arrival, and
letting its tail raise the delay would keep a backlog long after the stall.

Lips are in sync where the viewer sees and hears them, not where they leave us.
After us a video frame still spends longer than its audio (a slower codec, the
receiver's video jitter buffer, decoder and compositor against its audio jitter
buffer), so each track has a *downstream* delay and the video leaves early by how
much longer its downstream is than the voice's: ``due(capture, track) = capture +
delay_s - lead(track)``, never before it is ready. The delay itself stays the
slower track's need: when the face is the slower path the voice is not held a
further lead for it (that would cost the voice the lead; a browser's own lip sync,
which runs on our output since both tracks share one stream id, evens out
differences above its 30 ms dead band). The video's
downstream is a codec constant (``video_lead_ms``) plus, when the receiver reports
them (the page does: ``PATCH /sessions/{id} {"receiver_delay_ms": ...}``), its own
video receive→display and audio jitter-buffer times.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class PlayoutClock:
    enabled: bool = True
    max_delay_s: float = 0.5
    margin_s: float = 0.005
    fall_per_s: float = 0.05  # how fast the delay may shrink when latency drops
    max_lead_s: float = 0.1
    epoch: float = field(default_factory=time.monotonic)
    delay_s: float = 0.0
    _own: dict[str, collections.deque[float]] = field(default_factory=dict)
    _inbound: dict[str, collections.deque[float]] = field(default_factory=dict)
    #: Each track's time from our output to the viewer (only differences matter).
    downstream_s: dict[str, float] = field(default_factory=dict)
    #: What times the fall (tests step it by hand); capture times stay on time.monotonic.
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _updated: float = 0.0

    def __post_init__(self) -> None:
        self._updated = self.clock()

    def ticks(self, capture: float, rate: int) -> int:
        """The timestamp, in 1/``rate`` s, of an output whose input was captured at
        ``capture`` (without the track's lead, so a new receiver report never steps it back)."""
        return round((capture - self.epoch + self.delay_s) * rate)

    def due(self, capture: float, track: str) -> float:
        """When a ``track`` output whose input was captured at ``capture`` should leave."""
        return capture + self.delay_s - self.lead(track)

    def lead(self, track: str) -> float:
        """How much earlier than the voice ``track`` leaves (0 for the voice itself).

        Only the video leads: where the viewer's audio path is the longer one, the voice
        reaches it late, the benign direction (lips first), and holding every frame for
        a transient audio buffer would cost the face that much latency. At most
        ``max_lead_s``: a receiver report beyond it is a stalled viewer, not a codec."""
        if not self.enabled or track == "audio":
            return 0.0
        down = self.downstream_s
        ahead = down.get(track, 0.0) - down.get("audio", 0.0)
        return min(self.max_lead_s, max(0.0, ahead))

    def set_downstream(self, track: str, seconds: float) -> None:
        """Set ``track``'s time from our output to the viewer (any thread); the next
        ``due`` follows it."""
        if not 0.0 <= seconds <= self.max_delay_s:
            raise ValueError(f"downstream delay {seconds} s outside 0..{self.max_delay_s} s")
        with self._lock:
            self.downstream_s = {**self.downstream_s, track: seconds}

    def observe(
        self, track: str, latency_s: float, inbound_s: float = 0.0, window: int = 60
    ) -> None:
        """Record one capture→ready latency of ``track`` (any thread), of which
        ``inbound_s`` passed before the input reached us, and retune the delay."""
        if not self.enabled:
            return
        with self._lock:
            own = self._own.setdefault(track, collections.deque(maxlen=window))
            # Inbound delay: a longer memory, so a stall's burst stays a minority.
            inbound = self._inbound.setdefault(track, collections.deque(maxlen=5 * window))
            own.append(latency_s - inbound_s)
            inbound.append(inbound_s)
            target = max(self._need(name) for name in self._own) + self.margin_s
            target = min(self.max_delay_s, target)
            now = self.clock()
            if target >= self.delay_s:
                self.delay_s = target
            else:
                fall = self.fall_per_s * (now - self._updated)
                self.delay_s = max(target, self.delay_s - fall)
            self._updated = now

    def _need(self, track: str) -> float:
        """The delay ``track`` needs: p95 of its own latency + its median inbound delay."""
        return _p95(self._own[track]) + statistics.median(self._inbound[track])

    def latency_p95(self, track: str) -> float | None:
        with self._lock:
            return self._need(track) if track in self._own else None


def _p95(samples: collections.deque[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
