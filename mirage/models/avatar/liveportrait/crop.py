"""Face crops for LivePortrait from MediaPipe's 478 landmarks, and the feathered paste-back.

The crop follows LivePortrait's convention (``src/utils/crop.py`` there): a square aligned
with the axis from the eye centre to the mouth centre, side = ``scale`` × the larger extent
of the landmarks in that rotated frame, centre = the middle of that extent shifted by
``vx_ratio``/``vy_ratio`` × side along the rotated axes. Official values: source images
``scale 2.3, vy -0.125`` with rotation, cropped at 512 then resized to 256 (INTER_AREA);
driving frames ``scale 2.2, vy -0.1`` without rotation.

LivePortrait measures that extent on its own 203 (or insightface's 106) landmarks. With
the official 203-point model (``mirage.models.face.landmark203``) we do exactly that: every
one of the 203 points sizes the square, the axis runs from the mean of the eye points
(0, 6, 12, 18) and (24, 30, 36, 42) to the lip corners (48, 66), and the eye and lip
ratios are ``retargeting_utils``' (6-18 / 0-12, 30-42 / 24-36, 90-102 / 48-66). Without
it we use the MediaPipe points that cover the same outline (jaw line, brows, eyes, nose,
lips), leaving out the forehead, which the 203-point set does not reach, and the same
distance ratios on the matching MediaPipe points, whose scale is close to, not identical
with, the official model's. Every function here picks the layout by the number of points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe face-mesh indices (canonical 468/478 topology).
JAW = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
       377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356)  # fmt: skip
BROWS = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55,
         300, 293, 334, 296, 336, 276, 283, 282, 295, 285)  # fmt: skip
EYES = (33, 133, 159, 145, 160, 144, 158, 153, 362, 263, 386, 374, 385, 380, 387, 373)
NOSE_LIPS = (1, 4, 5, 195, 61, 291, 0, 17, 13, 14, 78, 308, 37, 267, 84, 314)
OUTLINE = JAW + BROWS + EYES + NOSE_LIPS
#: (corner, corner, top, bottom) of the image-left eye, then the image-right eye.
EYE_A = (33, 133, 159, 145)
EYE_B = (362, 263, 386, 374)
#: (corner, corner, inner top, inner bottom) of the mouth.
MOUTH = (61, 291, 13, 14)


@dataclass(frozen=True)
class Layout:
    """Which landmarks the crop rule and the openness ratios read, for one landmark set."""

    name: str
    outline: tuple[int, ...] | None  # points whose extent sizes the crop; None = all
    eye_a: tuple[int, ...]  # averaged: one eye's centre
    eye_b: tuple[int, ...]
    mouth: tuple[int, ...]  # averaged: the mouth's centre
    #: (gap, gap, width, width) point pairs of each openness ratio
    eye_a_ratio: tuple[int, int, int, int]
    eye_b_ratio: tuple[int, int, int, int]
    lip_ratio: tuple[int, int, int, int]


MEDIAPIPE = Layout(
    "mediapipe",
    OUTLINE,
    EYE_A[:2],
    EYE_B[:2],
    MOUTH[:2],
    (EYE_A[2], EYE_A[3], EYE_A[0], EYE_A[1]),
    (EYE_B[2], EYE_B[3], EYE_B[0], EYE_B[1]),
    (MOUTH[2], MOUTH[3], MOUTH[0], MOUTH[1]),
)
#: The official 203-point model (``parse_pt2_from_pt203``, ``retargeting_utils``).
LP203 = Layout(
    "lp203",
    None,
    (0, 6, 12, 18),
    (24, 30, 36, 42),
    (48, 66),
    (6, 18, 0, 12),
    (30, 42, 24, 36),
    (90, 102, 48, 66),
)


def layout_of(points: np.ndarray) -> Layout:
    """The layout of a landmark set, told by its size: 203 points or MediaPipe's 468/478."""
    count = len(points)
    if count == 203:
        return LP203
    if count in (468, 478):
        return MEDIAPIPE
    raise ValueError(f"no landmark layout for {count} points (expected 203, 468 or 478)")


@dataclass(frozen=True)
class CropConfig:
    """How a face is framed: LivePortrait's ``dsize``, ``scale``, ``vx_ratio``, ``vy_ratio``."""

    dsize: int = 512
    scale: float = 2.3
    vx_ratio: float = 0.0
    vy_ratio: float = -0.125
    rotate: bool = True


#: The official source-image crop (then resized to 256) and driving-frame crop.
SOURCE_CROP = CropConfig()
DRIVER_CROP = CropConfig(dsize=256, scale=2.2, vx_ratio=0.0, vy_ratio=-0.1, rotate=False)
#: The official 203-point landmark model's input crop, around coarse landmarks.
LANDMARK_CROP = CropConfig(dsize=224, scale=1.5, vx_ratio=0.0, vy_ratio=-0.1, rotate=True)


@dataclass(frozen=True)
class FaceRect:
    """A square face frame: centre (x, y), side in pixels, angle in radians (x-axis tilt)."""

    center: tuple[float, float]
    size: float
    angle: float


def _xy(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"landmarks must be (N, 2|3), got {pts.shape}")
    return pts[:, :2]


def face_rect(points: np.ndarray, config: CropConfig) -> FaceRect:
    """The crop square for 203 or 478 landmarks (pixels), by the official rule."""
    pts = _xy(points)
    layout = layout_of(pts)
    eye_mid = (pts[list(layout.eye_a)].mean(0) + pts[list(layout.eye_b)].mean(0)) / 2
    mouth_mid = pts[list(layout.mouth)].mean(0)
    uy = mouth_mid - eye_mid
    length = float(np.linalg.norm(uy))
    uy = uy / length if length > 1e-3 else np.array([0.0, 1.0])
    ux = np.array([uy[1], -uy[0]])
    angle = math.atan2(ux[1], ux[0])
    outline = pts if layout.outline is None else pts[list(layout.outline)]
    origin = outline.mean(0)
    rotated = (outline - origin) @ np.stack([ux, uy]).T
    lo, hi = rotated.min(0), rotated.max(0)
    mid = (lo + hi) / 2
    side = float((hi - lo).max()) * config.scale
    center = origin + ux * mid[0] + uy * mid[1]
    center = center + ux * (config.vx_ratio * side) + uy * (config.vy_ratio * side)
    return FaceRect(center=(float(center[0]), float(center[1])), size=side, angle=angle)


def blend_rect(previous: FaceRect, current: FaceRect, weight: float) -> FaceRect:
    """``previous`` moved ``weight`` of the way to ``current``: a steadier driving crop.

    The official pipeline crops a whole driving video with one averaged box; a live
    stream cannot see the future, so an exponential average stands in for it.
    """
    (px, py), (cx, cy) = previous.center, current.center
    turn = math.remainder(current.angle - previous.angle, math.tau)
    return FaceRect(
        center=(px + weight * (cx - px), py + weight * (cy - py)),
        size=previous.size + weight * (current.size - previous.size),
        angle=previous.angle + weight * turn,
    )


def crop_matrix(rect: FaceRect, dsize: int, rotate: bool = True) -> np.ndarray:
    """3×3 similarity that maps image pixels into the ``dsize`` crop (rotation undone)."""
    s = dsize / rect.size
    cos, sin = (math.cos(rect.angle), math.sin(rect.angle)) if rotate else (1.0, 0.0)
    cx, cy = rect.center
    half = dsize / 2
    return np.array(
        [
            [s * cos, s * sin, half - s * (cos * cx + sin * cy)],
            [-s * sin, s * cos, half - s * (-sin * cx + cos * cy)],
            [0.0, 0.0, 1.0],
        ]
    )


def warp(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """Apply the top two rows of ``matrix`` (bilinear, black outside)."""
    out: np.ndarray = cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64)[:2],
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0, 0.0, 0.0, 0.0),
    )
    return out


@dataclass(frozen=True)
class Crop:
    """A face crop and the matrix that produced it (image → crop pixels)."""

    image: np.ndarray
    matrix: np.ndarray

    def points(self, points: np.ndarray) -> np.ndarray:
        """Landmarks (pixels of the source image) expressed in crop pixels."""
        pts = _xy(points)
        return pts @ self.matrix[:2, :2].T + self.matrix[:2, 2]


def crop_face(image: np.ndarray, points: np.ndarray, config: CropConfig) -> Crop:
    """Cut ``config.dsize`` square crop of the face described by ``points``."""
    rect = face_rect(points, config)
    m = crop_matrix(rect, config.dsize, config.rotate)
    return Crop(warp(image, m, config.dsize, config.dsize), m)


def crop_source(image: np.ndarray, points: np.ndarray, size: int = 256) -> Crop:
    """The official source crop: 512 square, then INTER_AREA down to ``size``.

    The matrix returned maps image pixels to the 512 crop, which is also the pixel grid
    of the generator's 512 output, so it serves the paste-back as is.
    """
    crop = crop_face(image, points, SOURCE_CROP)
    small = cv2.resize(crop.image, (size, size), interpolation=cv2.INTER_AREA)
    return Crop(small, crop.matrix)


def _ratio(pts: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    return float(np.linalg.norm(pts[a] - pts[b]) / (np.linalg.norm(pts[c] - pts[d]) + 1e-6))


def eye_ratios(points: np.ndarray) -> tuple[float, float]:
    """Eye openness (lid gap / eye width) of each eye, as LivePortrait's ``calc_eye_close_ratio``."""
    pts = _xy(points)
    layout = layout_of(pts)
    return _ratio(pts, *layout.eye_a_ratio), _ratio(pts, *layout.eye_b_ratio)


def lip_ratio(points: np.ndarray) -> float:
    """Mouth openness (inner lip gap / mouth width), as ``calc_lip_close_ratio``."""
    pts = _xy(points)
    return _ratio(pts, *layout_of(pts).lip_ratio)


def feather_mask(size: int, border: float = 0.12, softness: float = 0.10) -> np.ndarray:
    """(size, size) float32 paste mask: 1 inside, smooth fall to exactly 0 at the edges.

    ``border`` is the fraction of each side left at 0 (the generator's rim is least
    reliable), ``softness`` the fraction over which it ramps up (smoothstep), so the
    pasted crop blends into the reference without a visible seam.
    """
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    edge = np.minimum(t, 1.0 - t)
    ramp = np.clip((edge - border) / max(softness, 1e-6), 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    return np.outer(ramp, ramp).astype(np.float32)


class PasteBack:
    """Blends 512 generator crops into a fixed background through a pre-warped mask.

    Built once per (reference, output size): ``to_output`` maps crop pixels to output
    pixels. Pixels where the mask is 0 are copied from ``background`` untouched.
    """

    def __init__(self, background: np.ndarray, to_output: np.ndarray, crop_size: int = 512):
        self.background = np.ascontiguousarray(background)
        self.to_output = np.asarray(to_output, dtype=np.float64)
        h, w = background.shape[:2]
        mask = warp(feather_mask(crop_size), self.to_output, w, h)
        ys, xs = np.nonzero(mask > 0)
        if ys.size == 0:
            self.window = (0, 0, 0, 0)
            self.mask = np.zeros((0, 0, 1), np.float32)
            return
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        self.window = (y0, y1, x0, x1)
        self.mask = mask[y0:y1, x0:x1, None]
        # shift so the warp renders only the window
        shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
        self._to_window = shift @ self.to_output

    def paste(self, crop: np.ndarray) -> np.ndarray:
        """The background with ``crop`` (RGB uint8, crop_size²) blended in."""
        out = self.background.copy()
        y0, y1, x0, x1 = self.window
        if y1 <= y0:
            return out
        face = warp(crop, self._to_window, x1 - x0, y1 - y0).astype(np.float32)
        base = out[y0:y1, x0:x1].astype(np.float32)
        blended = base + self.mask * (face - base)
        out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
