"""Dense face landmarks (478 points with irises) from mediapipe's shipped face mesh.

mediapipe 0.10.21 is the newest wheel that still carries the face detection and
face mesh models, so nothing is downloaded at run time. mediapipe is imported
inside ``FaceMesh`` so that importing mirage stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mirage.models.base import BadInput

#: Points in a refined mesh: 468 face points + 2 × 5 iris points.
NUM_POINTS = 478


@dataclass
class FaceLandmarks:
    """One face: points in pixels of the input image, its box, and a confidence."""

    points: np.ndarray  # (478, 3) float32: x, y in pixels; z in pixels, relative (smaller = nearer)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float  # share of the landmarks inside the image, in [0, 1]

    def scaled(self, factor: float) -> FaceLandmarks:
        """The same face in an image resized by ``factor`` (points, z and box alike)."""
        x0, y0, x1, y1 = self.box
        f = float(factor)
        box = (x0 * f, y0 * f, x1 * f, y1 * f)
        return FaceLandmarks(points=self.points * np.float32(f), box=box, score=self.score)

    @property
    def size(self) -> float:
        """The larger side of the box, in pixels."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise BadInput(f"expected an RGB image of shape (H, W, 3), got {shape}")
    if rgb.dtype != np.uint8:
        raise BadInput(f"expected a uint8 RGB image, got dtype {rgb.dtype}")
    if min(rgb.shape[:2]) < 16:
        raise BadInput(f"image too small for face landmarks: {rgb.shape[1]}x{rgb.shape[0]}")
    return np.ascontiguousarray(rgb)


class FaceMesh:
    """mediapipe's legacy face mesh with iris refinement; one graph per instance.

    ``static=False`` tracks across calls (the detector runs only when the track is
    lost, so the per-frame cost is the landmark model alone); ``static=True``
    detects on every call, for unrelated images such as reference portraits. An
    instance is not thread-safe: give each worker its own.

    mediapipe's legacy API reports no per-face confidence (faces under its
    thresholds are simply not returned), so ``score`` is the share of the face's
    landmarks that fall inside the image: low for a face cut by the frame edge.
    """

    def __init__(
        self,
        static: bool = False,
        max_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        if max_faces < 1:
            raise BadInput(f"max_faces must be >= 1, got {max_faces}")
        from mediapipe.python.solutions import face_mesh  # heavy: import on first use

        self._graph: Any = face_mesh.FaceMesh(
            static_image_mode=static,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def detect_all(self, rgb: np.ndarray) -> list[FaceLandmarks]:
        """Every face found in ``rgb`` (RGB uint8), largest first."""
        if self._graph is None:
            raise BadInput("FaceMesh is closed")
        image = _check_rgb(rgb)
        h, w = image.shape[:2]
        result = self._graph.process(image)
        faces: list[FaceLandmarks] = []
        for face in result.multi_face_landmarks or ():
            raw = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
            if raw.shape[0] != NUM_POINTS:
                continue
            # mediapipe normalises x by width, y by height and z like x.
            points = raw * np.array([w, h, w], dtype=np.float32)
            x0, y0 = points[:, :2].min(axis=0)
            x1, y1 = points[:, :2].max(axis=0)
            inside = (raw[:, 0] >= 0) & (raw[:, 0] <= 1) & (raw[:, 1] >= 0) & (raw[:, 1] <= 1)
            box = (float(x0), float(y0), float(x1), float(y1))
            faces.append(FaceLandmarks(points=points, box=box, score=float(inside.mean())))
        faces.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
        return faces

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """The largest face in ``rgb`` (RGB uint8), or ``None`` when there is none."""
        faces = self.detect_all(rgb)
        return faces[0] if faces else None

    def close(self) -> None:
        """Release the mediapipe graph; further calls raise ``BadInput``."""
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
