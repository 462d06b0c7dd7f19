"""The two model interfaces and the typed errors every backend raises.

Backends see numpy arrays only: no aiortc objects cross this line, so the same
backend runs behind the WebRTC tracks, the offline renderer and the benchmarks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class MirageError(Exception):
    """Base of every error we map to an HTTP status in one place (``mirage.app``)."""

    status = 500


class BadInput(MirageError):
    """The caller sent something we cannot use (bad option, bad image, bad audio)."""

    status = 400


class UnknownBackend(BadInput):
    """A backend name that is not registered."""


class NoFaceError(MirageError):
    """A reference portrait in which no face was found."""

    status = 422


class WeightsMissing(MirageError):
    """A backend whose weight files are not in the weights folder."""

    status = 503


class BackendUnavailable(MirageError):
    """A backend whose packages or device are not present on this machine."""

    status = 503


class Model(ABC):
    """What every backend has, face or voice, each with its default."""

    def reset(self) -> None:
        """Forget the stream (a new speaker, the driver's neutral pose); default: nothing."""

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Wall time of each stage of the last call (empty: not timed)."""
        return {}

    def close(self) -> None:
        """Release what the backend holds (graphs, weights); unusable afterwards."""

    def wait_closed(self, timeout: float) -> bool:
        """Block at most ``timeout`` until ``close`` has finished; False if it has not."""
        return True


class FaceAnimator(Model):
    """Animates a reference portrait with the motion of a driver's face.

    Every capability the engine uses is declared here or in ``Model``, with a no-op
    default, so callers never probe a backend (a wrapper such as the guard's forwards
    each)."""

    @abstractmethod
    def set_reference(self, image: np.ndarray) -> None:
        """Take an RGB uint8 portrait; raise ``NoFaceError`` when it holds no face."""

    @abstractmethod
    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        """Return the reference, moved like ``driver``, as RGB uint8 ``size``×``size``."""

    def set_quality(self, quality: str) -> None:
        """The session's quality level name changed (a cheap setter; default: ignored)."""


class VoiceConverter(Model):
    """Converts a stream of fixed-size mono blocks; keeps its own streaming state.

    Like ``FaceAnimator``, every capability has a declared default."""

    sample_rate: int
    block_size: int
    latency_s: float

    @abstractmethod
    def convert(self, block: np.ndarray) -> np.ndarray:
        """Take ``block_size`` float32 samples in [-1, 1], return as many converted ones."""

    @property
    def live_settings(self) -> bool:
        """Whether ``update`` changes anything while the converter streams: by default,
        whether the backend overrides ``update``."""
        return type(self).update is not VoiceConverter.update

    def update(self, **options: Any) -> object:
        """Change settings live, without resetting the stream (default: there are none)."""
        raise BadInput(f"{type(self).__name__} has no live settings")
