"""Face tracking for the avatar backends: a full detection every N frames, landmarks between.

A full detection looks at the whole frame: SCRFD when its weights are present (then the
landmark model runs on the square around SCRFD's box), otherwise the landmark model's own
detector on the whole frame. Between full detections the landmark model runs only on a
square region around the previous frame's landmarks, which is cheap and keeps the face
locked; when it loses the face the tracker falls back to a full detection at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from mirage.models.base import BadInput
from mirage.models.face import scrfd
from mirage.models.face.mesh import FaceLandmarks, FaceMesh


class Landmarker(Protocol):
    """Finds the largest face's 478 landmarks in an RGB image (``FaceMesh``'s interface)."""

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None: ...

    def close(self) -> None: ...


class BoxDetector(Protocol):
    """Finds the largest face's box in an RGB image (``Scrfd``'s interface)."""

    def largest(self, rgb: np.ndarray) -> scrfd.Detection | None: ...


@dataclass
class TrackerConfig:
    """``detect_every``: frames per full detection (1 = detect every frame).

    ``roi_scale``: side of the landmark window as a multiple of the face box's larger side;
    ``roi_size``: pixels the window is resampled to before landmarking.
    ``detector``: ``auto`` (SCRFD when its weights are present), ``scrfd`` or ``mesh``.
    """

    detect_every: int = 5
    roi_scale: float = 1.7
    roi_size: int = 256
    detector: str = "auto"


def make_detector(kind: str, models_dir: str | None) -> BoxDetector | None:
    """SCRFD for ``scrfd`` (or ``auto`` when its weights are present), else ``None``."""
    if kind == "mesh":
        return None
    if kind == "auto" and scrfd.unavailable_reason(models_dir) is not None:
        return None
    if kind not in ("auto", "scrfd"):
        raise BadInput(f"unknown face detector {kind!r}; use auto, scrfd or mesh")
    return scrfd.Scrfd(models_dir=models_dir)


def square_window(box: tuple[float, float, float, float], scale: float, size: int) -> np.ndarray:
    """3×3 matrix mapping image pixels into a ``size`` square around ``box`` scaled by ``scale``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 1.0) * scale
    s = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy], [0.0, 0.0, 1.0]])


def _in_image(lm: FaceLandmarks, matrix: np.ndarray) -> FaceLandmarks:
    """Landmarks found in a window, mapped back to the full image's pixels."""
    s, tx, ty = matrix[0, 0], matrix[0, 2], matrix[1, 2]
    pts = lm.points.astype(np.float32).copy()
    pts[:, 0] = (pts[:, 0] - tx) / s
    pts[:, 1] = (pts[:, 1] - ty) / s
    if pts.shape[1] > 2:
        pts[:, 2] = pts[:, 2] / s
    x0, y0, x1, y1 = lm.box
    box = ((x0 - tx) / s, (y0 - ty) / s, (x1 - tx) / s, (y1 - ty) / s)
    return replace(lm, points=pts, box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])))


class FaceTracker:
    """Landmarks of the largest face, frame after frame (one per stream; not thread-safe)."""

    def __init__(
        self,
        config: TrackerConfig | None = None,
        models_dir: str | None = None,
        landmarker: Landmarker | None = None,
        detector: BoxDetector | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        if self.config.detect_every < 1:
            raise BadInput(f"detect_every must be ≥ 1, got {self.config.detect_every}")
        self._landmarker: Landmarker = landmarker or FaceMesh(static=True, max_faces=1)
        self._detector = (
            detector if detector is not None else make_detector(self.config.detector, models_dir)
        )
        self._last: FaceLandmarks | None = None
        self._since_detect = 0
        self.full_detections = 0  # how many frames needed a whole-frame detection

    @property
    def uses_scrfd(self) -> bool:
        return self._detector is not None

    def reset(self) -> None:
        """Forget the tracked face; the next frame gets a full detection."""
        self._last = None
        self._since_detect = 0

    def close(self) -> None:
        self._landmarker.close()

    def _in_window(
        self, rgb: np.ndarray, box: tuple[float, float, float, float]
    ) -> FaceLandmarks | None:
        size = self.config.roi_size
        m = square_window(box, self.config.roi_scale, size)
        window = cv2.warpAffine(rgb, m[:2], (size, size), flags=cv2.INTER_LINEAR)
        found = self._landmarker.detect(window)
        return _in_image(found, m) if found is not None else None

    def _detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        self.full_detections += 1
        if self._detector is None:
            return self._landmarker.detect(rgb)
        face = self._detector.largest(rgb)
        return self._in_window(rgb, face.box) if face is not None else None

    def track(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """The face's landmarks in ``rgb`` (RGB uint8), or ``None`` when there is none."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInput(f"expected an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
        found: FaceLandmarks | None = None
        due = self._since_detect % self.config.detect_every == 0
        if self._last is not None and not due:
            found = self._in_window(rgb, self._last.box)
            self._since_detect += 1
        if found is None:
            found = self._detect(rgb)
            self._since_detect = 1
        self._last = found
        return found
