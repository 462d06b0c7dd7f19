"""The session's playout clock: one epoch for both tracks' timestamps.

Both output tracks derive their RTP timestamps from the same monotonic epoch, so
a receiver can line audio and video up. Each output frame is stamped with the
capture time of the input it came from (its server arrival time) plus a playout
delay shared by both tracks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class PlayoutClock:
    epoch: float = field(default_factory=time.monotonic)
    delay_s: float = 0.0  # shared playout delay added to every capture stamp

    def now(self) -> float:
        return time.monotonic()

    def ticks(self, capture: float, rate: int) -> int:
        """The timestamp, in units of 1/``rate`` s, for an output of input captured at ``capture``."""
        return round((capture - self.epoch + self.delay_s) * rate)
