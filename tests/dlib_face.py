"""An independent face model to measure avatars with: dlib's 68 landmarks and 128-d descriptor.

Mirage animates with mediapipe's landmarks; judging the result with the same
model would reward its own blind spots. dlib's HOG detector, its 68-point shape
predictor and its ResNet face descriptor (``dlib-bin`` and
``face-recognition-models`` from PyPI) are trained on other data by other
people, so where they agree with the driver the face really moved.

Each signal is a plain number per face, normalised by the distance between the
outer eye corners so that faces of any size compare:

- ``mouth``: inner-lip gap; ``width``: distance between the mouth corners (a smile
  widens it, a pucker narrows it); ``corners``: the corners' height above the mouth's
  centre (up when smiling, down when frowning);
- ``eyes``: eye aspect ratio (lid gap over eye width);
- ``gaze_x`` / ``gaze_y``: the dark-pupil centroid inside dlib's eye contour,
  along / across the line between the eye corners (0.5 = centred; image left → right),
  averaged over the eyes that are open; ``gaze_x_both`` / ``gaze_y_both``: the same,
  only while both eyes are open (NaN otherwise). Each eye's pupil sits at its own
  place between its corners, so a mean over whichever eyes are open jumps when one
  shuts (a wink, a lid read as shut on one face only); compared over frames where
  both faces have both eyes open, the eye set never changes;
- ``brow``: brow height above the line through the eye centres;
- ``roll`` (degrees, in the image plane) and ``yaw`` (the nose tip between the jaw
  sides, 0 = frontal); ``pitch``: the nose tip's height below the eye corners (it
  shrinks as the head tips back and grows as it nods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

SIGNALS = (
    "mouth", "width", "corners", "eyes", "gaze_x", "gaze_y", "gaze_x_both", "gaze_y_both",
    "brow", "roll", "yaw", "pitch",
)  # fmt: skip

#: dlib's 68-point indices (0-based).
RIGHT_EYE = np.arange(36, 42)  # image left
LEFT_EYE = np.arange(42, 48)
BROWS = np.arange(17, 27)
INNER_TOP = (61, 62, 63)
INNER_BOTTOM = (67, 66, 65)
MOUTH_CORNERS = (48, 54)
#: Eye aspect ratio below which an eye counts as shut and its pupil is not looked for.
SHUT = 0.15


@dataclass(frozen=True)
class Signals:
    """What dlib reads on one face (see the module docstring for each field)."""

    mouth: float
    width: float
    corners: float
    eyes: float
    gaze_x: float
    gaze_y: float
    gaze_x_both: float
    gaze_y_both: float
    brow: float
    roll: float
    yaw: float
    pitch: float
    points: np.ndarray  # (68, 2) float64 pixels

    def get(self, name: str) -> float:
        return float(getattr(self, name))


def _models() -> tuple[str, str]:
    import warnings

    with warnings.catch_warnings():  # the package still imports pkg_resources
        warnings.simplefilter("ignore")
        import face_recognition_models as frm

    return frm.pose_predictor_model_location(), frm.face_recognition_model_location()


def pupil(gray: np.ndarray, eye: np.ndarray) -> tuple[float, float] | None:
    """(along, across) position of the dark pupil in the eye contour ``eye`` (6, 2).

    The centroid of the eye's darker pixels (below the contour's median, weighted
    by how much darker), in units of the corner-to-corner width, from the
    image-left corner; ``across`` is positive downwards. ``None``: no dark pixels found.
    """
    left, right = (eye[0], eye[3]) if eye[0, 0] < eye[3, 0] else (eye[3], eye[0])
    width = float(np.linalg.norm(right - left))
    if width < 4:
        return None
    x0, y0 = np.floor(eye.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(eye.max(axis=0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    if x1 - x0 < 3 or y1 - y0 < 2:
        return None
    scale = 4  # the contour is drawn at 1/4 pixel, then averaged into a soft mask
    mask = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), dtype=np.uint8)
    poly = np.round((eye - [x0, y0] + 0.5) * scale - 0.5).astype(np.int32)
    cv2.fillPoly(mask, [poly], (255,))
    cover = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA) / 255.0
    region = gray[y0:y1, x0:x1].astype(np.float64)
    cover = cover[: region.shape[0], : region.shape[1]]
    inside = cover > 0.5
    if inside.sum() < 6:
        return None
    level = float(np.median(region[inside]))
    weight = np.clip(level - region, 0.0, None) * cover
    total = float(weight.sum())
    if total <= 0:
        return None
    ys, xs = np.mgrid[y0 : y0 + region.shape[0], x0 : x0 + region.shape[1]]
    c = np.array([(weight * xs).sum(), (weight * ys).sum()]) / total
    along = (right - left) / width
    down = np.array([-along[1], along[0]])
    rel = c - left
    return float(rel @ along / width), float(rel @ down / width)


class DlibFace:
    """dlib's detector, 68-point predictor and face descriptor; one per thread."""

    def __init__(self) -> None:
        import dlib

        predictor, encoder = _models()
        self._detector: Any = dlib.get_frontal_face_detector()
        self._predictor: Any = dlib.shape_predictor(predictor)
        self._encoder: Any = dlib.face_recognition_model_v1(encoder)
        self._rect: Any = dlib.rectangle

    def _shape(self, rgb: np.ndarray) -> Any | None:
        faces = list(self._detector(rgb, 0))
        if not faces:
            faces = list(self._detector(rgb, 1))  # small faces: upsample once
        if not faces:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        return self._predictor(rgb, face)

    def points(self, rgb: np.ndarray) -> np.ndarray | None:
        """The 68 landmarks (68, 2) of the largest face, or ``None``."""
        shape = self._shape(rgb)
        if shape is None:
            return None
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def descriptor(self, rgb: np.ndarray) -> np.ndarray | None:
        """The 128-d descriptor of the largest face (distance < 0.6: same person)."""
        shape = self._shape(rgb)
        if shape is None:
            return None
        return np.array(self._encoder.compute_face_descriptor(rgb, shape))

    def measure(self, rgb: np.ndarray) -> Signals | None:
        """Every signal of the largest face in ``rgb`` (RGB uint8), or ``None``."""
        p = self.points(rgb)
        if p is None:
            return None
        return signals(rgb, p)


def signals(rgb: np.ndarray, p: np.ndarray) -> Signals:
    """The signals of one face with landmarks ``p`` (68, 2) in ``rgb``."""
    iod = max(float(np.linalg.norm(p[45] - p[36])), 1e-6)
    gaps = [np.linalg.norm(p[a] - p[b]) for a, b in zip(INNER_TOP, INNER_BOTTOM, strict=True)]
    mouth = float(np.mean(gaps))
    ears = []
    for eye in (p[RIGHT_EYE], p[LEFT_EYE]):
        gap = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
        ears.append(gap / (2 * max(float(np.linalg.norm(eye[3] - eye[0])), 1e-6)))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = [
        pupil(gray, p[eye]) if ear >= SHUT else None
        for eye, ear in zip((RIGHT_EYE, LEFT_EYE), ears, strict=True)
    ]
    pupils = [q for q in found if q is not None]
    gaze = np.mean(pupils, axis=0) if pupils else np.array([math.nan, math.nan])
    both = gaze if len(pupils) == 2 else np.array([math.nan, math.nan])
    c_r, c_l = p[RIGHT_EYE].mean(axis=0), p[LEFT_EYE].mean(axis=0)
    along = (c_l - c_r) / max(float(np.linalg.norm(c_l - c_r)), 1e-6)
    up = np.array([along[1], -along[0]])
    brow = float(np.mean((p[BROWS] - (c_r + c_l) / 2) @ up) / iod)
    roll = math.degrees(math.atan2(along[1], along[0]))
    left, right = p[MOUTH_CORNERS[0]], p[MOUTH_CORNERS[1]]
    centre = (p[62] + p[66]) / 2  # between the inner lips: not moved by the opening
    corners = float(((left + right) / 2 - centre) @ up)
    jaw = (p[16] - p[0]) @ along
    yaw = float((p[30] - p[0]) @ along / jaw - 0.5) if abs(jaw) > 1e-6 else 0.0
    corners_mid = p[[36, 39, 42, 45]].mean(axis=0)  # rigid, unlike the lids
    pitch = float((corners_mid - p[30]) @ up / iod)
    return Signals(
        mouth=mouth / iod,
        width=float(np.linalg.norm(right - left)) / iod,
        corners=corners / iod,
        eyes=float(np.mean(ears)),
        gaze_x=float(gaze[0]),
        gaze_y=float(gaze[1]),
        gaze_x_both=float(both[0]),
        gaze_y_both=float(both[1]),
        brow=brow,
        roll=roll,
        yaw=yaw,
        pitch=pitch,
        points=p,
    )
