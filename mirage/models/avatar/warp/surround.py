"""Where the hair, neck and background round the face go as the face moves.

The mesh's rings (topology.py) sit on spokes out from the face's outline. Each
ring vertex follows the head's rigid motion at its own place by its
``head_weight``, and ring B follows the head's shift across the frame by its
``body_weight`` — only the part beyond ``STILL_SHIFT`` face widths, so a head
that sways a little leaves the background still. Held to that alone, a head
that leans across its frame with its mouth open runs over its own rings: on a
real driver (d12, 0.4 face widths of lean, 20° of yaw) the outline overtook
ring A and ring A ring B on a fifth of the frames, folding the neck under the
jaw, which then stood on the dress with a hard edge (issue 18). So each ring is
finally kept at least ``MIN_GAP`` of its rest distance outside the one within
it, along its spoke.
"""

from __future__ import annotations

import numpy as np

from mirage.models.avatar.warp import pose
from mirage.models.avatar.warp.topology import OVAL, Mesh
from mirage.models.face.mesh import NUM_POINTS

#: A ring keeps at least this share of its rest distance from the ring (or the
#: outline) inside it, measured along its spoke.
MIN_GAP = 0.4
#: The head's shift across the frame (in face widths) the body does not follow.
STILL_SHIFT = 0.05


def place_rings(
    mesh: Mesh,
    face: np.ndarray,
    motion: pose.Motion,
    reference: np.ndarray,
    max_depth: float,
) -> np.ndarray:
    """The positions (V − 478, 3) of the mesh's vertices after the landmarks.

    ``face``: the landmarks' new positions (478, 3), placed from ``reference``
    by ``motion``; ``max_depth`` as in ``pose.place``.
    """
    source = mesh.vertices.astype(np.float64)
    extra = source[NUM_POINTS:]
    weight = mesh.head_weight[NUM_POINTS:, None].astype(np.float64)
    body = mesh.body_weight[NUM_POINTS:, None].astype(np.float64)
    rigid = pose.place(extra, motion, reference, max_depth)
    out = extra + weight * (rigid - extra) + body * _body_shift(motion, source)
    placed = np.concatenate([face.astype(np.float64), out])
    _keep_outside(placed, source, mesh.spokes)
    return placed[NUM_POINTS:]


def _body_shift(motion: pose.Motion, source: np.ndarray) -> np.ndarray:
    """The head's shift (3,) less ``STILL_SHIFT`` face widths of it, depth none."""
    shift = np.zeros(3)
    shift[:2] = motion.shift[:2]
    length = float(np.linalg.norm(shift))
    still = STILL_SHIFT * float(np.ptp(source[OVAL, 0]))
    if length <= still:
        return np.zeros(3)
    return shift * ((length - still) / length)


def _keep_outside(target: np.ndarray, source: np.ndarray, spokes: np.ndarray) -> None:
    """Push each ring vertex out along its spoke (in place) until it lies at least
    ``MIN_GAP`` of its rest distance outside the vertex within it."""
    centre = target[spokes[:, 0], :2].mean(axis=0)
    out = target[spokes[:, 0], :2] - centre
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    for column in (1, 2):
        inner, outer = spokes[:, column - 1], spokes[:, column]
        on = (inner >= 0) & (outer >= 0)
        i, o, u = inner[on], outer[on], out[on]
        rest = np.linalg.norm(source[o, :2] - source[i, :2], axis=1)
        have = ((target[o, :2] - target[i, :2]) * u).sum(axis=1)
        lack = np.maximum(MIN_GAP * rest - have, 0.0)
        target[o, :2] += lack[:, None] * u
