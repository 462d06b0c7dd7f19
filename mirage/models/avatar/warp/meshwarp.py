"""Piecewise-affine mesh warp: a backward map drawn at low resolution, one remap.

Each output pixel must know where in the reference it comes from. The target
triangles are rasterised, as triangle ids, into a grid ``grid`` times smaller
than the output (painter's order, so nearer triangles hide farther ones when a
turned head folds the mesh); each grid cell evaluates its triangle's affine map
(target → source); the map is upsampled bilinearly — exact inside triangles,
since the map is linear there — and ``cv2.remap`` does the one full-size pass.
Only the box the mesh moves in is rasterised; the rest is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

_SHIFT = 4  # fractional bits of the vertex coordinates handed to cv2
_ONE = 1 << _SHIFT
_MAX_STRETCH = 8.0  # source area over target area beyond which a triangle only translates


def triangle_affines(target: np.ndarray, source: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(n, 6) affine maps taking each target triangle onto its source triangle.

    Triangles squeezed to (almost) nothing get a pure translation instead: they
    cover no pixel of their own, but cells at their edges may be sampled with
    their map, and a near-singular map flung there would fetch far-away texture.
    """
    t = target[tris].astype(np.float64)  # (n, 3, 2)
    s = source[tris].astype(np.float64)
    te1, te2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    se1, se2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]
    det = te1[:, 0] * te2[:, 1] - te1[:, 1] * te2[:, 0]  # twice the signed target area
    src_det = se1[:, 0] * se2[:, 1] - se1[:, 1] * se2[:, 0]
    ok = (np.abs(det) > 1.0) & (np.abs(src_det) < _MAX_STRETCH * np.abs(det))
    inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    # linear = [se1 se2] @ inverse([te1 te2]) (edges as columns)
    i00, i01 = te2[:, 1] * inv_det, -te2[:, 0] * inv_det
    i10, i11 = -te1[:, 1] * inv_det, te1[:, 0] * inv_det
    a = se1[:, 0] * i00 + se2[:, 0] * i10
    b = se1[:, 0] * i01 + se2[:, 0] * i11
    c = se1[:, 1] * i00 + se2[:, 1] * i10
    d = se1[:, 1] * i01 + se2[:, 1] * i11
    a, d = np.where(ok, a, 1.0), np.where(ok, d, 1.0)
    b, c = np.where(ok, b, 0.0), np.where(ok, c, 0.0)
    # translation: the first vertex (or, for squeezed ones, the centroid) lands right
    anchor_t = np.where(ok[:, None], t[:, 0], t.mean(axis=1))
    anchor_s = np.where(ok[:, None], s[:, 0], s.mean(axis=1))
    e = anchor_s[:, 0] - a * anchor_t[:, 0] - b * anchor_t[:, 1]
    f = anchor_s[:, 1] - c * anchor_t[:, 0] - d * anchor_t[:, 1]
    return np.stack([a, b, e, c, d, f], axis=1).astype(np.float32)


def signed_areas(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(n,) signed areas of the triangles ``tris`` over ``points`` (V, 2+), in pixels²."""
    a, b, c = (points[tris[:, i], :2].astype(np.float64) for i in range(3))
    twice: np.ndarray = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (
        c[:, 0] - a[:, 0]
    )
    return 0.5 * twice


@dataclass(frozen=True)
class Distortion:
    """How badly a warp tears the mesh, in target pixels² (for benchmarks and tests).

    ``folded``: area of the triangles turned over (their corners in the opposite
    order to the source's): the surface doubling back on itself. ``stretched``:
    area gained by the triangles that grew more than ``STRETCHED`` times: a
    few source pixels smeared over many, which shows as streaks.
    """

    folded: float
    stretched: float


#: A triangle this many times larger than its source (plus a 2 px² allowance) counts
#: as stretched.
STRETCHED = 2.5


def distortion(source: np.ndarray, target: np.ndarray, tris: np.ndarray) -> Distortion:
    """The ``Distortion`` of moving ``tris`` from ``source`` to ``target`` vertices."""
    s, t = signed_areas(source, tris), signed_areas(target, tris)
    folded = np.sign(s) != np.sign(t)
    grown = ~folded & (np.abs(t) > STRETCHED * np.abs(s) + 2.0)
    return Distortion(
        folded=float(np.abs(t[folded]).sum()),
        stretched=float((np.abs(t[grown]) - np.abs(s[grown])).sum()),
    )


@dataclass
class WarpGrid:
    """Per output size: how many output pixels one cell of the map covers."""

    size: int
    grid: int  # output pixels per grid cell

    def __post_init__(self) -> None:
        self.cells = -(-self.size // self.grid)


@dataclass(frozen=True)
class BoxMap:
    """The backward map over the part of the output that moves; elsewhere identity."""

    x0: int
    y0: int
    xy: np.ndarray  # (h, w, 2) float32 reference-pixel coordinates


def _evaluate(
    target: np.ndarray,
    aff: np.ndarray,
    tris: np.ndarray,
    order: np.ndarray,
    box: tuple[int, int, int, int],
    k: int,
) -> np.ndarray:
    """The map at the centres of the cells of ``box`` (x0, y0, w, h, in cells of
    ``k`` output pixels): (h, w, 2) float32. ``order``: indices into ``tris`` /
    ``aff`` to draw, in painter's order; cells no triangle covers keep the identity.
    """
    x0, y0, w, h = box
    cell = (target + 0.5) / k - 0.5 - np.array([x0, y0], dtype=np.float32)
    corners = np.round(cell * _ONE).astype(np.int32)[tris[order]]  # fixed point
    ids = np.full((h, w), len(aff) - 1, dtype=np.int32)  # last row: identity
    for i, tri in zip(order.tolist(), corners, strict=True):
        cv2.fillConvexPoly(ids, tri, i, cv2.LINE_8, _SHIFT)
    xs = (np.arange(x0, x0 + w, dtype=np.float32) + 0.5) * k - 0.5
    ys = (np.arange(y0, y0 + h, dtype=np.float32) + 0.5) * k - 0.5
    gy = ys[:, None]
    # One coefficient at a time, gathered into contiguous planes: gathering all six
    # as (h, w, 6) and reading them back strided cost twice as much (a whole-frame
    # map at 512: 1.2 of the 2.3 ms), for the same float32 sums in the same order.
    columns = np.ascontiguousarray(aff.T)
    xy = np.empty((h, w, 2), dtype=np.float32)
    term = np.empty((h, w), dtype=np.float32)
    for axis in (0, 1):
        p = 3 * axis
        np.take(columns[p], ids, out=term)
        term *= xs
        value = np.take(columns[p + 1], ids)
        value *= gy
        value += term
        value += np.take(columns[p + 2], ids)
        xy[..., axis] = value
    return xy


def backward_map(
    grid: WarpGrid,
    target: np.ndarray,
    source: np.ndarray,
    tris: np.ndarray,
    moving: np.ndarray,
    details: list[tuple[int, int, int, int]] | None = None,
) -> BoxMap | None:
    """The map output pixel → reference pixel, for ``cv2.remap``; ``None``: identity.

    ``target`` / ``source``: (V, 2) vertex positions in output / reference
    pixels; ``tris`` (n, 3) in drawing order (later ones on top); ``moving``:
    (V,) bool, the vertices that may differ between target and source — the
    box around the triangles that touch them is all that is rasterised.
    ``details``: output boxes (x0, y0, x1, y1) redone at full resolution, where
    the map has edges an upsampled one would blur (a shut eye's lid line).
    """
    size, k = grid.size, grid.grid
    # Triangles with no moving corner are the identity, which uncovered cells get anyway.
    drawn = np.nonzero(moving[tris].any(axis=1))[0]
    if len(drawn) == 0:
        return None
    touched = tris[drawn]
    pts = np.concatenate([target[touched].reshape(-1, 2), source[touched].reshape(-1, 2)])
    lo = np.floor(pts.min(axis=0) / k).astype(int) - 1
    hi = np.ceil(pts.max(axis=0) / k).astype(int) + 2
    cx0, cy0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    cx1, cy1 = min(int(hi[0]), grid.cells), min(int(hi[1]), grid.cells)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    w, h = cx1 - cx0, cy1 - cy0
    aff = np.concatenate([triangle_affines(target, source, tris), _IDENTITY])
    ox0, oy0 = cx0 * k, cy0 * k
    ox1, oy1 = min(cx1 * k, size), min(cy1 * k, size)
    if k == 1:
        xy = _evaluate(target, aff, tris, drawn, (cx0, cy0, w, h), k)
    else:
        # One extra cell all round, so that the upsampling (half-pixel-centred,
        # as cv2.resize samples) interpolates up to the box's edge, not clamps.
        xy = _evaluate(target, aff, tris, drawn, (cx0 - 1, cy0 - 1, w + 2, h + 2), k)
        xy = cv2.resize(xy, ((w + 2) * k, (h + 2) * k), interpolation=cv2.INTER_LINEAR)
        xy = xy[k:-k, k:-k]
    xy = xy[: oy1 - oy0, : ox1 - ox0]
    if k > 1 and details:
        corners = target[touched]
        tri_lo, tri_hi = corners.min(axis=1), corners.max(axis=1)
        for bx0, by0, bx1, by1 in details:
            bx0, by0 = max(bx0, ox0), max(by0, oy0)
            bx1, by1 = min(bx1, ox1), min(by1, oy1)
            if bx1 <= bx0 or by1 <= by0:
                continue
            near = drawn[
                np.nonzero(
                    (tri_hi[:, 0] >= bx0 - 1)
                    & (tri_lo[:, 0] <= bx1)
                    & (tri_hi[:, 1] >= by0 - 1)
                    & (tri_lo[:, 1] <= by1)
                )[0]
            ]
            fine = _evaluate(target, aff, tris, near, (bx0, by0, bx1 - bx0, by1 - by0), 1)
            xy[by0 - oy0 : by1 - oy0, bx0 - ox0 : bx1 - ox0] = fine
    return BoxMap(ox0, oy0, xy)


_IDENTITY = np.array([[1, 0, 0, 0, 1, 0]], dtype=np.float32)


def warp(image: np.ndarray, box_map: BoxMap | None) -> np.ndarray:
    """``image`` resampled through the map (bilinear; outside pixels repeat the edge)."""
    out = image.copy()
    if box_map is None:
        return out
    h, w = box_map.xy.shape[:2]
    no_map2: Any = None  # a two-channel map1 needs no map2 (cv2's stubs disagree)
    out[box_map.y0 : box_map.y0 + h, box_map.x0 : box_map.x0 + w] = cv2.remap(
        image, box_map.xy, no_map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out
