"""Backends behind a ``ModelGuard``, with the backend interfaces unchanged.

The tracks call these exactly as they call a bare backend (and fall back when a
call raises). What the session has told the model (its portrait, its quality,
live voice settings) is remembered and replayed onto a remade model, so a
restart is invisible apart from the frames that fell back meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mirage.engine.guard import ModelGuard
from mirage.engine.voicechain import CleanVoice
from mirage.models.base import BadInput, FaceAnimator, VoiceConverter


class SupervisedAnimator(FaceAnimator):
    """A ``FaceAnimator`` whose calls go through a guard; it forwards every capability."""

    def __init__(
        self,
        animator: FaceAnimator,
        make: Callable[[], FaceAnimator] | None,
        reference: np.ndarray | None,
        **guard: Any,
    ) -> None:
        self._make = make
        self._reference = reference
        self._quality: str | None = None
        self.guard: ModelGuard[FaceAnimator] = ModelGuard(
            animator, None if make is None else self._remake, **guard
        )

    def _remake(self) -> FaceAnimator:
        assert self._make is not None
        animator = self._make()
        if self._reference is not None:
            animator.set_reference(self._reference)
        if self._quality is not None:
            animator.set_quality(self._quality)
        return animator

    def set_reference(self, image: np.ndarray) -> None:
        self.guard.call(lambda m: m.set_reference(image), setup=True)
        self._reference = image

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        return self.guard.call(lambda m: m.animate(driver, size))

    def reset(self) -> None:
        self.guard.call(lambda m: m.reset(), setup=True)

    def set_quality(self, quality: str) -> None:
        """A cheap setter, applied directly (and again after a restart)."""
        self._quality = quality
        model = self.guard.model
        if model is not None:
            model.set_quality(quality)

    @property
    def stage_seconds(self) -> dict[str, float]:
        model = self.guard.model
        return {} if model is None else model.stage_seconds

    def close(self) -> None:
        self.guard.close()

    def wait_closed(self, timeout: float) -> bool:
        return self.guard.wait_closed(timeout)


class SupervisedConverter(VoiceConverter):
    """A ``VoiceConverter`` whose calls go through a guard; a remade converter has the
    same options, so the same rate, block size and latency. It forwards every capability."""

    def __init__(
        self,
        converter: VoiceConverter,
        make: Callable[[], VoiceConverter] | None,
        **guard: Any,
    ) -> None:
        self.sample_rate = converter.sample_rate
        self.block_size = converter.block_size
        self.latency_s = converter.latency_s
        self._make = make
        self._updates: dict[str, Any] = {}
        self.guard: ModelGuard[VoiceConverter] = ModelGuard(
            converter, None if make is None else self._remake, **guard
        )

    def _remake(self) -> VoiceConverter:
        assert self._make is not None
        converter = self._make()
        if self._updates:
            converter.update(**self._updates)
        return converter

    def convert(self, block: np.ndarray) -> np.ndarray:
        return self.guard.call(lambda m: m.convert(block))

    def reset(self) -> None:
        self.guard.call(lambda m: m.reset(), setup=True)

    @property
    def live_settings(self) -> bool:
        model = self.guard.model
        return model is not None and model.live_settings

    def update(self, **options: Any) -> None:
        """Live voice settings, remembered for a remade converter."""
        model = self.guard.model
        if model is None or not model.live_settings:
            raise BadInput("this voice backend has no live settings")
        model.update(**options)
        self._updates.update(options)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """The voice chain's own stages (the suppressor) for the last block."""
        model = self.guard.model
        return {} if model is None else model.stage_seconds

    @property
    def gate_open_share(self) -> float | None:
        model = self.guard.model
        return model.gate_open_share if isinstance(model, CleanVoice) else None

    @property
    def suppressor_strength(self) -> float | None:
        model = self.guard.model
        return model.suppressor_strength if isinstance(model, CleanVoice) else None

    def close(self) -> None:
        self.guard.close()

    def wait_closed(self, timeout: float) -> bool:
        return self.guard.wait_closed(timeout)
