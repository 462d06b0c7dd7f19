"""Which mediapipe landmarks are what, and the triangle mesh built over them.

The face part of the mesh is mediapipe's own tessellation (so lips and lids are
triangle edges and never cut across); its holes (mouth and eyes) are closed with
strips between the upper and lower chains; the area around the face is covered
by two rings of extra points (hair, ears, neck) and the fixed image border, so
the head moves with its hair and neck, the body follows a large lean, and the
background stays still (surround.py places the rings).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.spatial import Delaunay

from mirage.models.face.mesh import NUM_POINTS

#: Face points that move with the skull, not with expressions: forehead, nose
#: bridge, temples, cheekbones, eye corners (used to estimate the head pose).
RIGID = np.array(
    [10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 109, 338, 67, 297, 234, 454, 127, 356,
     93, 323, 116, 345, 123, 352, 33, 263, 133, 362, 98, 327, 48, 278],
    dtype=np.int32,
)  # fmt: skip

#: The face outline, as a closed loop.
OVAL = np.array(
    [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
     377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
     109],
    dtype=np.int32,
)  # fmt: skip

#: Inner lip chains, corner to corner (same corners, paired point by point).
LIP_UPPER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308], dtype=np.int32)
LIP_LOWER = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308], dtype=np.int32)
#: Lid chains of each eye, outer corner to inner corner, paired point by point.
EYE_R_UPPER = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133], dtype=np.int32)
EYE_R_LOWER = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133], dtype=np.int32)
EYE_L_UPPER = np.array([263, 466, 388, 387, 386, 385, 384, 398, 362], dtype=np.int32)
EYE_L_LOWER = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362], dtype=np.int32)
EYES = ((EYE_R_UPPER, EYE_R_LOWER), (EYE_L_UPPER, EYE_L_LOWER))
#: The ring just above each upper lid's inner points (paired with ``upper[1:-1]``):
#: the lid between it and the lash line slides as one piece when the eye shuts.
LID_BANDS = (
    np.array([247, 30, 29, 27, 28, 56, 190], dtype=np.int32),
    np.array([467, 260, 259, 257, 258, 286, 414], dtype=np.int32),
)
#: Iris centres (refined mesh): right eye (image left of a frontal face), left eye.
IRIS_CENTRES = (468, 473)

#: Extra mesh vertices after the 478 landmarks: ring A, ring B, then the border.
RING_A_SCALE = 1.35
RING_B_SCALE = 2.0
#: How much of the head's shift across the frame ring B follows: a person who leans
#: moves their neck and shoulders with their head, and with ring B held still a
#: large lean (d12: 0.4 face widths) squeezed the neck into a strip beside the jaw,
#: the chin standing on the dress (issue 18).
BODY_SHIFT = 0.5
BORDER_STEPS = 6


def loop(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """A closed polygon from two chains that share their end points."""
    return np.concatenate([upper, lower[-2:0:-1]])


def _strip(upper: np.ndarray, lower: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangles filling the gap between two paired chains (mouth or eye opening)."""
    tris: list[tuple[int, int, int]] = []
    for i in range(len(upper) - 1):
        a, b, c, d = upper[i], upper[i + 1], lower[i], lower[i + 1]
        if i == 0:  # shared corner: one triangle
            tris.append((int(a), int(b), int(d)))
        elif i == len(upper) - 2:
            tris.append((int(a), int(b), int(c)))
        else:
            tris.append((int(a), int(b), int(c)))
            tris.append((int(b), int(d), int(c)))
    return tris


@lru_cache(maxsize=1)
def face_triangles() -> tuple[np.ndarray, np.ndarray]:
    """mediapipe's face tessellation as triangles, plus the mouth and eye fills.

    Returns ``(skin, holes)``: (n, 3) int32 each. The tessellation is a list of
    edges; its faces are the edge triangles, less the few 3-cycles that are not
    faces (all three of their edges are shared by three triangles).
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]}
    uses: dict[tuple[int, int], int] = {}
    for t in tris:
        for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            uses[e] = uses.get(e, 0) + 1
    skin = [
        t
        for t in sorted(tris)
        if not all(uses[e] == 3 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))
    ]
    holes = _strip(LIP_UPPER, LIP_LOWER)
    for upper, lower in EYES:
        holes += _strip(upper, lower)
    return np.array(skin, dtype=np.int32), np.array(holes, dtype=np.int32)


@dataclass(frozen=True)
class Mesh:
    """A reference's mesh: vertex positions, weights and triangles in draw order.

    ``vertices`` (V, 3): the 478 landmarks, then ring A, ring B and border points
    (x, y in reference pixels; z in the same unit). ``head_weight`` (V,): how much
    of the head's rigid motion each extra vertex follows;
    ``body_weight`` (V,): how much of the head's shift across the frame (a body
    leaning with it); landmarks: unused. ``spokes`` (len(OVAL), 3): each outline
    point with the ring A and ring B vertices scaled out from it (−1 where the
    ring point fell outside the frame and was dropped). ``back`` triangles (around
    the face) are drawn first, ``face`` ones sorted by depth over them.
    """

    vertices: np.ndarray
    head_weight: np.ndarray
    body_weight: np.ndarray
    spokes: np.ndarray
    back: np.ndarray
    face: np.ndarray

    def scaled(self, factor: float) -> Mesh:
        return Mesh(
            self.vertices * np.float32(factor),
            self.head_weight,
            self.body_weight,
            self.spokes,
            self.back,
            self.face,
        )


def _inside(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over ``pts``."""
    x, y = pts[:, 0][:, None], pts[:, 1][:, None]
    x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (x < xs)).sum(axis=1) % 2 == 1


def build_mesh(points: np.ndarray, width: int, height: int) -> Mesh:
    """The mesh of a reference whose (478, 3) landmarks are ``points``."""
    skin, holes = face_triangles()
    pts = points.astype(np.float32)
    oval = pts[OVAL]
    centre = oval[:, :2].mean(axis=0)
    # Rings follow the outline outwards; they sit at the depth of the outline.
    rings = []
    weights = []
    bodies = []
    spokes = np.full((len(OVAL), 3), -1, dtype=np.int32)
    spokes[:, 0] = OVAL
    first = NUM_POINTS
    for column, (scale, weight, body) in enumerate(
        ((RING_A_SCALE, 1.0, 0.0), (RING_B_SCALE, 0.0, BODY_SHIFT)), start=1
    ):
        ring = oval.copy()
        ring[:, :2] = centre + scale * (oval[:, :2] - centre)
        below = ring[:, 1] > centre[1]  # the neck follows the head less than the hair
        w = np.where(below, weight * 0.7, weight)
        keep = (
            (ring[:, 0] > -0.25 * width)
            & (ring[:, 0] < 1.25 * width)
            & (ring[:, 1] > -0.25 * height)
            & (ring[:, 1] < 1.25 * height)
        )
        spokes[keep, column] = first + np.arange(int(keep.sum()))
        first += int(keep.sum())
        rings.append(ring[keep])
        weights.append(w[keep])
        bodies.append(np.full(int(keep.sum()), body))
    # The border lies well outside the image so that no ring reaches it.
    x0, y0 = -0.3 * width, -0.3 * height
    x1, y1 = 1.3 * width, 1.3 * height
    t = np.linspace(0.0, 1.0, BORDER_STEPS, endpoint=False)
    border_xy = np.concatenate(
        [
            np.stack([x0 + (x1 - x0) * t, np.full_like(t, y0)], axis=1),
            np.stack([np.full_like(t, x1), y0 + (y1 - y0) * t], axis=1),
            np.stack([x1 - (x1 - x0) * t, np.full_like(t, y1)], axis=1),
            np.stack([np.full_like(t, x0), y1 - (y1 - y0) * t], axis=1),
        ]
    )
    border = np.zeros((len(border_xy), 3), dtype=np.float32)
    border[:, :2] = border_xy
    extra = np.concatenate([*rings, border]).astype(np.float32)
    vertices = np.concatenate([pts, extra])
    head_weight = np.concatenate([np.ones(NUM_POINTS), *weights, np.zeros(len(border))]).astype(
        np.float32
    )
    body_weight = np.concatenate([np.zeros(NUM_POINTS), *bodies, np.zeros(len(border))]).astype(
        np.float32
    )
    # Triangulate the outline and everything outside it; drop what lies inside.
    outer_ids = np.concatenate([OVAL, NUM_POINTS + np.arange(len(extra))])
    tri = Delaunay(vertices[outer_ids, :2]).simplices
    back = outer_ids[tri]
    centroids = vertices[back, :2].mean(axis=1)
    back = back[~_inside(oval[:, :2], centroids)]
    face = np.concatenate([skin, holes])
    return Mesh(
        vertices, head_weight, body_weight, spokes, back.astype(np.int32), face.astype(np.int32)
    )
