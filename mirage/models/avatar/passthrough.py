"""The camera image itself, fitted to the output size: the fallback of every animator."""

from __future__ import annotations

import cv2
import numpy as np

from mirage.models.base import FaceAnimator


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``image`` to a square and resize it to ``size``×``size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


class PassthroughAnimator(FaceAnimator):
    """Shows the driver unchanged; the reference is accepted and ignored."""

    def set_reference(self, image: np.ndarray) -> None:
        pass

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        return fit_square(driver, size)
