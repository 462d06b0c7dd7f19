"""Head pose from landmarks, and moving a reference face like a driver's.

Poses are similarity transforms (scale, rotation, translation) fitted on the
rigid landmarks (Umeyama's least-squares fit), always *between two faces* — the
driver now against the driver's neutral, the driver's neutral against the
reference — so no canonical 3D face model is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirage.models.avatar.warp.topology import RIGID


@dataclass(frozen=True)
class Similarity:
    """``y ≈ scale · R · x + t`` for row vectors: ``y = scale · x @ R.T + t``."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.scale * x @ self.rotation.T + self.translation


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """The least-squares similarity taking ``src`` (n, 3) onto ``dst`` (n, 3)."""
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sing, vt = np.linalg.svd(cov)
    flip = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[2, 2] = -1.0
    rot = u @ flip @ vt
    var = (a**2).sum() / len(src)
    scale = float((sing * np.diag(flip)).sum() / var) if var > 0 else 1.0
    return Similarity(scale, rot, mu_d - scale * mu_s @ rot.T)


def euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of an image-frame rotation (x right, y down, z away).

    Yaw turns about the vertical axis, pitch about the horizontal one, roll in
    the image plane; the signs are only used for "same direction" comparisons.
    """
    r = rotation
    yaw = float(np.degrees(np.arcsin(np.clip(r[0, 2], -1.0, 1.0))))
    pitch = float(np.degrees(np.arctan2(-r[1, 2], r[2, 2])))
    roll = float(np.degrees(np.arctan2(-r[0, 1], r[0, 0])))
    return yaw, pitch, roll


def clamp_rotation(rotation: np.ndarray, max_degrees: float) -> np.ndarray:
    """``rotation`` with its angle limited to ``max_degrees`` (same axis)."""
    cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    limit = np.radians(max_degrees)
    if angle <= limit or angle < 1e-9:
        return rotation
    axis = np.array(
        [
            rotation[2, 1] - rotation[1, 2],
            rotation[0, 2] - rotation[2, 0],
            rotation[1, 0] - rotation[0, 1],
        ]
    )
    norm = np.linalg.norm(axis)
    if norm < 1e-9:
        return rotation
    k = axis / norm
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(limit) * kx + (1 - np.cos(limit)) * (kx @ kx)


def face_width(points: np.ndarray) -> float:
    """Distance between the outer eye corners: a pose-robust face size."""
    return float(np.linalg.norm(points[33, :2] - points[263, :2]))


def pivot(points: np.ndarray) -> np.ndarray:
    """The point the head turns about: behind the rigid landmarks, near the neck."""
    centre = points[RIGID].mean(axis=0).astype(np.float64)
    centre[2] += 1.1 * face_width(points)
    return centre


@dataclass(frozen=True)
class MotionLimits:
    """How far the avatar may follow the driver (keeps the head in its frame)."""

    max_degrees: float = 35.0
    min_scale: float = 0.8
    max_scale: float = 1.25
    max_shift: float = 0.6  # of the reference's face width
    translation_gain: float = 1.0


@dataclass(frozen=True)
class Motion:
    """The driver's motion since its neutral, in the reference's frame."""

    rotation: np.ndarray  # (3, 3), about the reference's pivot
    scale: float
    shift: np.ndarray  # (3,), reference pixels
    expression: np.ndarray  # (478, 3): reference landmarks with the driver's expression

    @property
    def degrees(self) -> tuple[float, float, float]:
        return euler_degrees(self.rotation)


def transfer(
    neutral: np.ndarray,
    driver: np.ndarray,
    reference: np.ndarray,
    to_reference: Similarity,
    limits: MotionLimits,
) -> Motion:
    """Express ``driver`` relative to ``neutral`` and carry it onto ``reference``.

    ``to_reference`` is ``fit_similarity(neutral[RIGID], reference[RIGID])``,
    fitted once per neutral. The expression is what is left of the driver once
    its head pose is undone; it is rotated and scaled into the reference's frame
    and added to the reference's own landmarks, so the reference keeps its shape.
    """
    head = fit_similarity(neutral[RIGID], driver[RIGID])
    undone = (driver - head.translation) @ head.rotation / head.scale
    delta = undone - neutral
    r2, s2 = to_reference.rotation, to_reference.scale
    expression = reference + s2 * delta @ r2.T
    rotation = clamp_rotation(r2 @ head.rotation @ r2.T, limits.max_degrees)
    scale = float(np.clip(head.scale, limits.min_scale, limits.max_scale))
    p = pivot(neutral)
    moved = head.apply(p[None, :])[0] - p
    shift = s2 * moved @ r2.T * limits.translation_gain
    shift[2] = 0.0
    limit = limits.max_shift * face_width(reference)
    norm = float(np.linalg.norm(shift[:2]))
    if norm > limit:
        shift *= limit / norm
    return Motion(rotation, scale, shift, expression)


#: mediapipe's nose-tip landmark: the front of the face, where depth is measured from.
NOSE_TIP = 1


def flattened(points: np.ndarray, reference: np.ndarray, max_depth: float) -> np.ndarray:
    """``points`` (n, 3) with no point deeper than ``max_depth`` face widths behind
    the reference's nose tip.

    mediapipe puts the face's sides and the ears 1.1–1.3 face widths behind the
    nose tip. Turned with that depth, a frontal portrait's sides swing round: the
    far one folds over itself and the near one — foreshortened in the portrait,
    a few pixels of texture — is stretched into streaks (issue 18; measured with
    ``bench/expression.py`` on a real turning driver). Held at ``max_depth`` the
    sides move with the front of the face and the turn still reads (the nose and
    the features keep their depth).
    """
    limit = reference[NOSE_TIP, 2] + max_depth * face_width(reference)
    out = points.astype(np.float64)
    out[:, 2] = np.minimum(out[:, 2], limit)
    return out


def place(
    points: np.ndarray, motion: Motion, reference: np.ndarray, max_depth: float
) -> np.ndarray:
    """Move ``points`` (reference frame, (n, 3)) rigidly like the driver's head,
    turning them with their depth held at ``max_depth`` (see ``flattened``)."""
    p = pivot(reference)
    q = flattened(points, reference, max_depth)
    return p + motion.scale * (q - p) @ motion.rotation.T + motion.shift
