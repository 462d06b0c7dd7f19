"""One-Euro filter (Casiez et al., CHI 2012) over arrays of landmarks.

A low-pass filter whose cutoff rises with speed: still landmarks are smoothed
hard (no jitter), fast ones (a mouth opening) follow with little lag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    """Cutoffs in Hz; ``beta`` in 1/(units per second) of the filtered values."""

    min_cutoff: float = 1.0
    beta: float = 3.0
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters (n, d) arrays; each of the n points gets its own speed-adapted cutoff."""

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None

    def reset(self) -> None:
        self._value = None
        self._speed = None

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        """The filtered ``x``, ``dt`` seconds after the previous call."""
        x = x.astype(np.float64)
        if self._value is None or self._speed is None or dt <= 0:
            self._value = x.copy()
            self._speed = np.zeros(x.shape[0])
            return x
        c = self.config
        speed = np.linalg.norm(x - self._value, axis=-1) / dt
        a_d = _alpha(c.d_cutoff, dt)
        self._speed = self._speed + a_d * (speed - self._speed)
        cutoff = c.min_cutoff + c.beta * self._speed
        a = np.asarray(_alpha(cutoff, dt))[:, None]
        self._value = self._value + a * (x - self._value)
        return self._value.copy()
