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
from mirage.models.base import FaceAnimator, VoiceConverter


class SupervisedAnimator:
    """A ``FaceAnimator`` whose calls go through a guard."""

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
        set_quality = getattr(animator, "set_quality", None)
        if self._quality is not None and callable(set_quality):
            set_quality(self._quality)
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
        set_quality = getattr(self.guard.model, "set_quality", None)
        if callable(set_quality):
            set_quality(quality)

    @property
    def stage_seconds(self) -> dict[str, float] | None:
        inner = getattr(self.guard.model, "stage_seconds", None)
        return inner if isinstance(inner, dict) else None

    def close(self) -> None:
        self.guard.close()

    def wait_closed(self, timeout: float) -> bool:
        return self.guard.wait_closed(timeout)


class SupervisedConverter:
    """A ``VoiceConverter`` whose calls go through a guard; a remade converter has the
    same options, so the same rate, block size and latency."""

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
            converter.update(**self._updates)  # type: ignore[attr-defined]
        return converter

    def convert(self, block: np.ndarray) -> np.ndarray:
        return self.guard.call(lambda m: m.convert(block))

    @property
    def stage_seconds(self) -> dict[str, float] | None:
        """The voice chain's own stages (the suppressor) for the last block."""
        model = self.guard.model
        return model.stage_seconds if isinstance(model, CleanVoice) else None

    @property
    def gate_open_share(self) -> float | None:
        model = self.guard.model
        return model.gate_open_share if isinstance(model, CleanVoice) else None

    def __getattr__(self, name: str) -> Any:
        """``update`` (live voice settings) exactly when the backend has it, remembered
        for a remade converter; anything else is read from the current converter."""
        if name.startswith("_") or name == "guard":
            raise AttributeError(name)
        attr = getattr(self.guard.model, name)
        if name != "update":
            return attr

        def update(**options: Any) -> None:
            attr(**options)
            self._updates.update(options)

        return update

    def close(self) -> None:
        self.guard.close()

    def wait_closed(self, timeout: float) -> bool:
        return self.guard.wait_closed(timeout)
