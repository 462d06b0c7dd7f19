"""The reference's eyes taken apart: an eye white without its iris, and the whole iris.

A warp shows only the pixels the reference has. A narrow or half-shut eye has
little white and a partly hidden iris, so it can neither look sideways (the iris
would slide over lid skin) nor open wider (the opening would show lid skin). So
each eye is split once, at ``set_reference``: the *white* is the reference's
own opening, lash line included, with the iris filled in with the eye's
white colour, and sclera beyond the opening; the *iris* is a
full disc, its hidden top and bottom filled by mirroring the visible part,
with a rim of what surrounds it. Per frame the white is laid into the opening,
the iris on it where the driver looks, and the lids frame both. At rest the
layers put back the reference's own pixels (to within resampling): the eye is
the portrait's, not a painted one, until it moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mirage.models.avatar.warp.topology import EYES, IRIS_CENTRES, loop

#: The eye white of a portrait whose eye shows too little of its own.
_WHITE = np.array([222.0, 212.0, 204.0], dtype=np.float32)
#: Iris radius over eye width when the landmarks give no usable one.
_IRIS_SHARE = 0.22
#: How far (pixels) past the landmarks' iris radius the iris is cut out of the white
#: and carried with the iris: the landmark circle runs a little inside the real one.
_HOLE = 1.5


@dataclass(frozen=True)
class Eyeball:
    """One eye of the reference (BASE pixels)."""

    white: np.ndarray  # (h, w, 3) float32, the box's eye white without the iris
    origin: np.ndarray  # (2,) float32, the box's top-left corner
    iris: np.ndarray  # (d, d, 4) float32 RGBA, the full iris centred in the square
    centre: np.ndarray  # (2,) float32, the reference's iris centre
    radius: float


def iris_radius(points: np.ndarray, centre_index: int, width: float) -> float:
    """The iris radius (pixels) from its landmark ring; a share of ``width`` if unusable."""
    ring = points[centre_index + 1 : centre_index + 5, :2]
    r = float(np.mean(np.linalg.norm(ring - points[centre_index, :2], axis=1)))
    if not 0.1 * width < r < 0.4 * width:
        r = _IRIS_SHARE * width
    return r


def split(image: np.ndarray, points: np.ndarray, eye: int) -> Eyeball:
    """Take eye ``eye`` (0 right, 1 left) of ``image`` (BASE RGB uint8) apart."""
    upper, lower = EYES[eye]
    poly = points[loop(upper, lower), :2].astype(np.float32)
    width = float(np.linalg.norm(points[upper[-1], :2] - points[upper[0], :2]))
    centre = points[IRIS_CENTRES[eye], :2].astype(np.float32)
    radius = iris_radius(points, IRIS_CENTRES[eye], width)
    pad = int(np.ceil(radius + 0.5 * width)) + 2
    h, w = image.shape[:2]
    x0, y0 = (np.floor(poly.min(axis=0)).astype(int) - pad).clip(0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + pad, w)
    y1 = min(int(np.ceil(poly[:, 1].max())) + pad, h)
    region = image[y0:y1, x0:x1].astype(np.float32)
    origin = np.array([x0, y0], dtype=np.float32)
    opening = np.zeros(region.shape[:2], dtype=np.uint8)
    cv2.fillPoly(opening, [np.round(poly - origin).astype(np.int32)], (255,))
    inner = cv2.erode(opening, np.ones((3, 3), np.uint8))  # off the lash line
    disc = np.zeros_like(inner)
    c = centre - origin
    cv2.circle(disc, (round(float(c[0])), round(float(c[1]))), round(radius + _HOLE), (255,), -1)
    sclera = (inner > 0) & (disc == 0)
    colour = _WHITE.copy()
    if sclera.sum() >= 8:
        # The white is the brightest of what the opening shows besides the iris
        # (its median is lid skin, shadow and lashes on a narrow eye).
        seen = region[sclera]
        level = seen.mean(axis=1)
        colour = np.median(seen[level >= np.percentile(level, 85)], axis=0).astype(np.float32)
    # Where the iris was, sclera; everywhere else in the opening (lash line
    # included) the reference's own pixels; beyond the opening, sclera again.
    inside = cv2.dilate(opening, np.ones((5, 5), np.uint8)).astype(np.float32) / 255.0
    inside *= 1.0 - cv2.GaussianBlur(disc.astype(np.float32) / 255.0, (3, 3), 0)
    keep = cv2.GaussianBlur(inside, (5, 5), 0)[..., None]
    white = colour[None, None, :] + (region - colour) * keep
    iris = _disc(region, inner > 0, opening, c, radius, colour)
    return Eyeball(white.astype(np.float32), origin, iris, centre, radius)


def _disc(
    region: np.ndarray,
    visible: np.ndarray,
    opening: np.ndarray,
    c: np.ndarray,
    radius: float,
    white: np.ndarray,
) -> np.ndarray:
    """The iris as an RGBA square: visible pixels, hidden ones mirrored across its
    horizontal diameter, the rest its mean colour; alpha a soft-edged circle that
    covers the hole cut for it in the white (``_HOLE``). The rim past ``radius`` is
    what surrounds the iris in the opening (``white`` under the lids), so at rest
    the disc puts back the reference's own pixels."""
    side = 2 * int(np.ceil(radius + _HOLE)) + 3
    half = (side - 1) / 2
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    sx, sy = xs - half + c[0], ys - half + c[1]  # region coordinates of each disc pixel
    my = 2 * c[1] - sy  # mirrored across the horizontal diameter

    def sample(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xi = np.clip(np.round(x).astype(int), 0, region.shape[1] - 1)
        yi = np.clip(np.round(y).astype(int), 0, region.shape[0] - 1)
        inside = (x >= 0) & (y >= 0) & (x < region.shape[1]) & (y < region.shape[0])
        return region[yi, xi], inside & visible[yi, xi]

    rgb, seen = sample(sx, sy)
    mirrored, seen_m = sample(sx, my)
    dist = np.hypot(xs - half, ys - half)
    in_disc = dist <= radius
    mean = rgb[seen & in_disc].mean(axis=0) if (seen & in_disc).any() else np.full(3, 60.0)
    out = np.where(seen[..., None], rgb, np.where(seen_m[..., None], mirrored, mean))
    xi = np.clip(np.round(sx).astype(int), 0, region.shape[1] - 1)
    yi = np.clip(np.round(sy).astype(int), 0, region.shape[0] - 1)
    rim = np.where((opening[yi, xi] > 0)[..., None], region[yi, xi], white)
    out = np.where(in_disc[..., None], out, rim)
    alpha = np.clip(radius + _HOLE + 1.0 - dist, 0.0, 1.0)
    return np.dstack([out, alpha]).astype(np.float32)


def _corner_map(target: np.ndarray, source: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """2×3 similarity target → source fixed by the eye corners."""
    t0, t1 = complex(*target[upper[0], :2]), complex(*target[upper[-1], :2])
    s0, s1 = complex(*source[upper[0], :2]), complex(*source[upper[-1], :2])
    a = (s1 - s0) / (t1 - t0) if abs(t1 - t0) > 1e-6 else 1.0 + 0j
    b = s0 - a * t0
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float32)


def render(
    ball: Eyeball,
    target: np.ndarray,
    source: np.ndarray,
    eye: int,
    box: tuple[int, int, int, int],
) -> np.ndarray:
    """The eye layer over output ``box``: the white fixed to the target's eye corners,
    the iris where the target's iris landmark is (``target``: output pixels,
    ``source``: BASE pixels), as (h, w, 3) float32."""
    upper, _ = EYES[eye]
    x0, y0, x1, y1 = box
    m = _corner_map(target, source, upper)  # output → BASE
    to_box = m.copy()
    to_box[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float32) - ball.origin
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    layer = cv2.warpAffine(ball.white, to_box, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    # The iris: same scale and turn, centred on the target iris.
    half = (ball.iris.shape[0] - 1) / 2
    ti = target[IRIS_CENTRES[eye], :2].astype(np.float32) - np.array([x0, y0], np.float32)
    to_iris = m.copy()
    to_iris[:, 2] = half - m[:, :2] @ ti
    disc = cv2.warpAffine(ball.iris, to_iris, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    a = disc[..., 3:4]
    return layer + (disc[..., :3] - layer) * a
