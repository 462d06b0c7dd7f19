"""The two model interfaces and the typed errors every backend raises.

Backends see numpy arrays only: no aiortc objects cross this line, so the same
backend runs behind the WebRTC tracks, the offline renderer and the benchmarks.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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


@runtime_checkable
class FaceAnimator(Protocol):
    """Animates a reference portrait with the motion of a driver's face."""

    def set_reference(self, image: np.ndarray) -> None:
        """Take an RGB uint8 portrait; raise ``NoFaceError`` when it holds no face."""

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        """Return the reference, moved like ``driver``, as RGB uint8 ``size``×``size``."""

    def reset(self) -> None:
        """Forget the driver's neutral pose; the next confident frame becomes neutral."""


@runtime_checkable
class VoiceConverter(Protocol):
    """Converts a stream of fixed-size mono blocks; keeps its own streaming state."""

    sample_rate: int
    block_size: int
    latency_s: float

    def convert(self, block: np.ndarray) -> np.ndarray:
        """Take ``block_size`` float32 samples in [-1, 1], return as many converted ones."""
