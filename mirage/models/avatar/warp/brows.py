"""Brows: raise and frown with the driver, relative to its neutral (issue 18).

The landmark delta alone moved the avatar's brows by about half of what dlib
reads on the driver: mediapipe reports a brow's motion at about 0.5 of dlib's
(standard deviation over d0 and d19), and each brow point trembles on its own.
So each brow is read as two numbers, its inner and outer half's vertical
displacement from the neutral (in face widths, averaged over the half's points),
scaled by ``gain`` (its first ``KNEE``; large raises are read in full), and laid
on the portrait's brow with a smooth falloff: the forehead above follows over a
wide reach, the skin below the brow over a short one, and the lids, lid bands and
irises not at all (the eyes are not dragged).
A frown is the inner halves going down; both directions are clamped so the brow
never reaches the lid (no folding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mirage.models.avatar.warp.topology import EYES, LID_BANDS
from mirage.models.face.mesh import NUM_POINTS

#: Each brow's points, inner half and outer half (upper and lower edge; the middle
#: column, 105/52 and 334/282, counts in both). Right brow (image left) first.
BROW_INNER = (
    np.array([107, 66, 105, 55, 65, 52], dtype=np.int32),
    np.array([336, 296, 334, 285, 295, 282], dtype=np.int32),
)
BROW_LOWER = (
    np.array([46, 53, 52, 65, 55], dtype=np.int32),
    np.array([276, 283, 282, 295, 285], dtype=np.int32),
)
BROW_OUTER = (
    np.array([70, 63, 105, 46, 53, 52], dtype=np.int32),
    np.array([300, 293, 334, 276, 283, 282], dtype=np.int32),
)
#: Reach of the falloff (face widths, Gaussian sigma) above the brow, and sideways
#: past its ends below it.
REACH_UP = 0.3
REACH_DOWN = 0.12
#: A brow rises at most this far (face widths), and each half comes down at most this
#: share of its smallest gap to the lid band.
MOST_UP = 0.2
MOST_DOWN = 0.5
#: The gain applies to this much of a brow half's motion (face widths); past it the
#: brow follows one to one. mediapipe reads a calm driver's small brow motions at about
#: half of dlib's (d0, d19), but an expressive driver's large ones in full (d3, d11:
#: mediapipe's raises reach 0.08-0.10 past the neutral, dlib's 0.05-0.07), which a
#: flat gain of 2 doubled into a forehead dragged up by a fifth of a face width.
KNEE = 0.03


@dataclass(frozen=True)
class BrowRig:
    """A portrait's brow falloff, built once per reference.

    ``inner`` / ``outer`` (2, N): how much of each brow half's displacement each
    landmark takes; ``up`` (2,): the portrait's up direction (perpendicular to the eye
    corners' line); ``unit``: its face width in pixels; ``room`` (2, 2): each brow
    half's (inner, outer) smallest gap from its lower edge down to the lid band, in
    face widths.
    """

    inner: np.ndarray
    outer: np.ndarray
    up: np.ndarray
    unit: float
    room: np.ndarray


def _up(points: np.ndarray) -> tuple[np.ndarray, float]:
    along = points[263, :2] - points[33, :2]
    unit = max(float(np.linalg.norm(along)), 1e-6)
    along = along / unit
    up = np.array([along[1], -along[0]])
    return (up if up[1] < 0 else -up), unit


def _still() -> np.ndarray:
    """Landmarks that brows never move: lids, lid bands, irises."""
    ids = [c for upper, lower in EYES for c in (upper, lower)] + list(LID_BANDS)
    mask = np.zeros(NUM_POINTS, dtype=bool)
    mask[np.concatenate(ids)] = True
    mask[468:NUM_POINTS] = True
    return mask


def _curve(across: np.ndarray, height: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """The height of ``chain`` (landmark ids) at each point's ``across`` position
    (linear between its points, flat past its ends)."""
    order = np.argsort(across[chain])
    return np.interp(across, across[chain][order], height[chain][order])


def rig(reference: np.ndarray) -> BrowRig:
    """The falloff of the portrait whose landmarks (478, 3) are ``reference``.

    Above a brow a point takes ``exp(-(d / REACH_UP)^2)`` of its motion (``d``: distance
    to the nearest brow point). Below it, the share falls linearly with height from the
    brow's lower edge to 0 at the lid band (both as curves across the face), times a
    sideways falloff past the brow's ends: points keep their order between brow and
    lid band however far the brow comes down within its room.
    """
    p = reference[:NUM_POINTS, :2].astype(np.float64)
    up, unit = _up(p)
    side = np.array([-up[1], up[0]])
    still = _still()
    inner = np.zeros((2, NUM_POINTS))
    outer = np.zeros((2, NUM_POINTS))
    room = np.zeros((2, 2))
    rows = np.arange(NUM_POINTS)
    for b in range(2):
        ids = np.union1d(BROW_INNER[b], BROW_OUTER[b])
        rel = (p[:, None, :] - p[ids][None, :, :]) / unit
        nearest = np.argmin(np.linalg.norm(rel, axis=2), axis=1)
        d = np.linalg.norm(rel[rows, nearest], axis=1)
        h = rel[rows, nearest] @ up
        # Heights over the lid band and the brow's lower edge, as curves across the face.
        across, height = p @ side / unit, p @ up / unit
        band = _curve(across, height, LID_BANDS[b])
        edge = _curve(across, height, BROW_LOWER[b])
        gap = np.maximum(edge - band, 1e-6)
        ends = across[ids]
        beyond = np.maximum(np.maximum(ends.min() - across, across - ends.max()), 0.0)
        below = np.clip((height - band) / gap, 0.0, 1.0)
        below *= np.exp(-((beyond / REACH_DOWN) ** 2))
        w = np.where(h > 0, np.exp(-((d / REACH_UP) ** 2)), below)
        w[ids] = 1.0
        w[still] = 0.0
        # Inner → outer share along the brow.
        a, z = p[BROW_INNER[b]].mean(axis=0), p[BROW_OUTER[b]].mean(axis=0)
        span = z - a
        t = np.clip((p - a) @ span / max(float(span @ span), 1e-9), 0.0, 1.0)
        inner[b], outer[b] = w * (1.0 - t), w * t
        for k, half in enumerate((BROW_INNER[b], BROW_OUTER[b])):
            room[b, k] = float(np.min(gap[half]))
    # Between the brows both pull: together as much as either would alone, at most.
    each = inner + outer
    both = 1.0 - np.prod(1.0 - each, axis=0)
    share = both / np.maximum(each.sum(axis=0), 1e-9)
    return BrowRig(inner * share, outer * share, up, unit, room)


def displacement(delta: np.ndarray, up: np.ndarray, unit: float) -> np.ndarray:
    """Each brow half's mean displacement (2 brows, inner / outer), face widths, up > 0.

    ``delta`` (478, ≥2): the driver's landmark motion since its neutral, carried into
    the portrait's frame (``motion.expression - reference``).
    """
    out = np.zeros((2, 2))
    for b in range(2):
        for k, half in enumerate((BROW_INNER[b], BROW_OUTER[b])):
            out[b, k] = float(np.mean(delta[half, :2] @ up)) / unit
    return out


def amplified(moved: np.ndarray, gain: float) -> np.ndarray:
    """``moved`` (face widths) times ``gain`` up to ``KNEE``, and past it one to one
    (or ``gain`` to one, if that is less)."""
    size = np.abs(moved)
    near = np.minimum(size, KNEE)
    return np.sign(moved) * (gain * near + min(gain, 1.0) * (size - near))


def apply(expression: np.ndarray, reference: np.ndarray, brow: BrowRig, gain: float) -> None:
    """Set the brow region of ``expression`` (in place) from its own brow halves' motion
    times ``gain``, with the rig's falloff; a point's own vertical delta is blended out
    as far as the falloff reaches it (single brow points tremble)."""
    if gain <= 0.0:
        return
    delta = expression[:NUM_POINTS, :2] - reference[:NUM_POINTS, :2]
    moved = amplified(displacement(delta, brow.up, brow.unit), gain)
    moved = np.clip(moved, -MOST_DOWN * brow.room, MOST_UP)
    target = (brow.inner.T @ moved[:, 0] + brow.outer.T @ moved[:, 1]) * brow.unit
    weight = (brow.inner + brow.outer).sum(axis=0)
    own = delta @ brow.up
    change = target - weight * own
    expression[:NUM_POINTS, :2] += (change[:, None] * brow.up[None, :]).astype(expression.dtype)
