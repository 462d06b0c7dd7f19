"""A reference portrait prepared once: square crop, landmarks, mesh, per-size copies."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from mirage.models.avatar.warp.eyeball import Eyeball, split
from mirage.models.avatar.warp.features import GazeSpans, eye_openings, gaze_spans, mouth_opening
from mirage.models.avatar.warp.meshwarp import WarpGrid
from mirage.models.avatar.warp.topology import EYES, OVAL, Mesh, build_mesh
from mirage.models.face.mesh import FaceLandmarks

#: Side of the working copy the mesh and motion are computed in.
BASE = 512


@dataclass
class Sized:
    """The portrait at one output size."""

    image: np.ndarray  # (size, size, 3) uint8
    source: np.ndarray  # (V, 2) float32 mesh vertices in this size's pixels
    grid: WarpGrid


@dataclass
class Portrait:
    """Everything ``animate`` needs from the reference, computed in ``set_reference``.

    ``points``/``mesh`` are in ``BASE``×``BASE`` pixels of the square crop.
    """

    image: np.ndarray  # (BASE, BASE, 3) uint8 crop
    points: np.ndarray  # (478, 3) float32
    mesh: Mesh
    box: tuple[float, float, float, float]  # face box in BASE pixels
    mouth_open: float
    eyes_open: tuple[float, float]
    gaze_spans: GazeSpans  # where each iris centre may go (features.gaze_spans)
    shade: float  # brightness of the face skin relative to a typical one
    eyeballs: tuple[Eyeball, Eyeball]  # each eye's white and iris, apart
    crop: tuple[int, int, int]  # x0, y0, side of the crop in the uploaded image
    _sizes: dict[tuple[int, int], Sized] = field(default_factory=dict, repr=False)

    def at(self, size: int, grid: int) -> Sized:
        """The portrait resized to ``size`` (made on first use, then kept)."""
        key = (size, grid)
        if key not in self._sizes:
            interp = cv2.INTER_AREA if size < BASE else cv2.INTER_LINEAR
            image = cv2.resize(self.image, (size, size), interpolation=interp)
            source = (self.mesh.vertices[:, :2] * (size / BASE)).astype(np.float32)
            self._sizes[key] = Sized(image, source, WarpGrid(size, grid))
        return self._sizes[key]


def crop_box(
    shape: tuple[int, ...], face: FaceLandmarks, face_scale: float
) -> tuple[int, int, int]:
    """(x0, y0, side): a square around the face, as large as the image allows
    up to ``face_scale`` face sizes, with the face centred where possible."""
    h, w = shape[:2]
    x0, y0, x1, y1 = face.box
    side = int(min(h, w, max(face.size * face_scale, 64)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(np.clip(round(cx - side / 2), 0, w - side))
    top = int(np.clip(round(cy - side / 2), 0, h - side))
    return left, top, side


def _lower_lids_to_lashes(points: np.ndarray, share: float = 0.3) -> None:
    """Move the lower lid landmarks down onto the lash line.

    The landmark model puts the lower lid contour a little inside the eye, on
    the white; an upper lid closed onto it would leave a sliver of eye showing.
    """
    for upper, lower in EYES:
        gap = points[lower[1:-1], :2] - points[upper[1:-1], :2]
        points[lower[1:-1], :2] += share * gap


def prepare(image: np.ndarray, face: FaceLandmarks, face_scale: float) -> Portrait:
    """Crop ``image`` (RGB uint8) around ``face`` and precompute the mesh."""
    left, top, side = crop_box(image.shape, face, face_scale)
    crop = image[top : top + side, left : left + side]
    k = BASE / side
    interp = cv2.INTER_AREA if side > BASE else cv2.INTER_CUBIC
    base = np.ascontiguousarray(cv2.resize(crop, (BASE, BASE), interpolation=interp))
    points = face.points.astype(np.float32).copy()
    points[:, 0] -= left
    points[:, 1] -= top
    points *= np.float32(k)
    _lower_lids_to_lashes(points)
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    mesh = build_mesh(points, BASE, BASE)
    # Skin brightness inside the face outline, to light the painted mouth.
    mask = np.zeros((BASE, BASE), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points[OVAL, :2]).astype(np.int32)], (255,))
    grey = cv2.cvtColor(base, cv2.COLOR_RGB2GRAY)
    skin = float(np.median(grey[mask > 0])) if mask.any() else 150.0
    return Portrait(
        image=base,
        points=points,
        mesh=mesh,
        box=(float(x0), float(y0), float(x1), float(y1)),
        mouth_open=mouth_opening(points),
        eyes_open=eye_openings(points),
        gaze_spans=gaze_spans(points.astype(np.float64)),
        shade=float(np.clip(skin / 150.0, 0.45, 1.15)),
        eyeballs=(split(base, points, 0), split(base, points, 1)),
        crop=(left, top, side),
    )
