"""Fault-injection backends the tests and benchmarks make by name (hidden from users)."""

from __future__ import annotations

import threading
import time

import numpy as np

from mirage.models.avatar.passthrough import PassthroughAnimator, fit_square
from mirage.models.voice.passthrough import PassthroughConverter


class InvertAnimator(PassthroughAnimator):
    """The camera image with its colours inverted: proves a frame went through a model."""

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        return 255 - fit_square(driver, size)


class SlowAnimator(PassthroughAnimator):
    """Pass-through after ``delay_ms``: a model slower than the frame budget."""

    def __init__(self, delay_ms: float = 100.0) -> None:
        self.delay_s = float(delay_ms) / 1000

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().animate(driver, size)


class FailingAnimator(PassthroughAnimator):
    """Raises on every ``every``-th frame (1 = always)."""

    def __init__(self, every: int = 1) -> None:
        self.every = max(1, int(every))
        self.count = 0

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        self.count += 1
        if self.count % self.every == 0:
            raise RuntimeError(f"injected animator failure on frame {self.count}")
        return 255 - fit_square(driver, size)


class SlowConverter(PassthroughConverter):
    """Pass-through after ``delay_ms`` per block."""

    def __init__(self, delay_ms: float = 40.0, **kwargs: float) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.delay_s = float(delay_ms) / 1000

    def convert(self, block: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return block


class FailingConverter(PassthroughConverter):
    """Raises on every ``every``-th block (1 = always)."""

    def __init__(self, every: int = 1) -> None:
        super().__init__()
        self.every = max(1, int(every))
        self.count = 0

    def convert(self, block: np.ndarray) -> np.ndarray:
        self.count += 1
        if self.count % self.every == 0:
            raise RuntimeError(f"injected converter failure on block {self.count}")
        return block


class DelayConverter(PassthroughConverter):
    """The input delayed by ``delay_ms`` (reported as ``latency_s``): a voice backend
    with more algorithmic delay than the face, for the A/V sync tests."""

    def __init__(self, delay_ms: float = 150.0) -> None:
        super().__init__()
        self.latency_s = float(delay_ms) / 1000
        self._line = np.zeros(round(self.latency_s * self.sample_rate), np.float32)

    def convert(self, block: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self._line, block])
        self._line = joined[len(block) :]
        return joined[: len(block)]


class HangAnimator(PassthroughAnimator):
    """Inverts ``after`` frames, then blocks in ``animate`` for ``hang_s`` (a stuck GPU
    call), then returns a pure red frame that must never reach a peer: its caller has
    long given up on it. Each instance hangs once."""

    def __init__(self, after: int = 20, hang_s: float = 3600.0) -> None:
        self.after = int(after)
        self.hang_s = float(hang_s)
        self.count = 0
        self._release = threading.Event()

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        self.count += 1
        if self.count == self.after + 1:
            self._release.wait(self.hang_s)
            out = np.zeros((size, size, 3), np.uint8)
            out[..., 0] = 255
            return out
        return 255 - fit_square(driver, size)

    def release(self) -> None:
        self._release.set()


class HangConverter(PassthroughConverter):
    """Passes ``after`` blocks, then blocks in ``convert`` for ``hang_s``, then returns
    full-scale noise that must never reach a peer. Each instance hangs once."""

    def __init__(self, after: int = 50, hang_s: float = 3600.0) -> None:
        super().__init__()
        self.after = int(after)
        self.hang_s = float(hang_s)
        self.count = 0
        self._release = threading.Event()

    def convert(self, block: np.ndarray) -> np.ndarray:
        self.count += 1
        if self.count == self.after + 1:
            self._release.wait(self.hang_s)
            return np.ones_like(block)
        return block

    def release(self) -> None:
        self._release.set()
