"""Mouth and eyes: what a plain mesh warp cannot show.

A warp can only move pixels that exist. An opening mouth would show a smeared
stretch of lip, a closing eye a squashed iris. So the mouth opening is painted
(a dark cavity, a tongue, and teeth: the reference's own hanging from the upper
lip, stretched down as the mouth opens, when it shows them; otherwise painted
ones, the upper fixed to the skull and the lower moving with the jaw), and the eye
openings show the reference's eye white and iris (eyeball.py), which do not
deform: the lids slide over them instead of squeezing them, and the iris moves
with the driver's gaze.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mirage.models.avatar.warp import eyeball
from mirage.models.avatar.warp.eyeball import Eyeball
from mirage.models.avatar.warp.topology import (
    EYES,
    IRIS_CENTRES,
    LID_BANDS,
    LIP_LOWER,
    LIP_UPPER,
    loop,
)

_SHIFT = 4
_ONE = 1 << _SHIFT
_LID_BAND_FOLLOW = 1.0

# Colours of the painted mouth, before the reference's brightness is applied.
_CAVITY = np.array([70, 28, 30], dtype=np.float32)
_TONGUE = np.array([120, 52, 56], dtype=np.float32)
_UPPER_TEETH = np.array([232, 224, 208], dtype=np.float32)
#: Painted upper teeth: at most this share of the mouth's width tall (a grin shows about
#: a fifth of the mouth's width of incisor; less read as another face).
TEETH_HEIGHT = 0.2
#: A reference's own mouth interior stretches down with the opening by up to this much.
TEETH_STRETCH = 2.0
#: The upper incisors' edge sits this share of the mouth's width below the closed-lip
#: line (relaxed lips show a few millimetres of them as soon as the jaw drops).
INCISAL_SHOW = 0.1
#: However shut the jaw, this share of the lips' gap stays dark between the teeth:
#: filled from lip to lip, a talking mouth with a moustache over it read to dlib as
#: closed (s12 × d19 mouth r 0.77 → 0.69; with the dark line 0.79).
BITE_GAP = 0.2
#: Painted lower teeth: at most this share of the upper teeth's tallest shows (an
#: open jaw's lower lip covers most of them), in this share of their brightness
#: (they sit in the lower lip's shadow).
LOWER_TEETH = 0.4
LOWER_SHADE = 0.85


def _gaps(points: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> tuple[np.ndarray, float]:
    """Signed gaps between paired chain points (positive = open), and the chain width."""
    a, b = points[upper[0], :2], points[upper[-1], :2]
    width = float(np.linalg.norm(b - a))
    if width < 1e-6:
        return np.zeros(len(upper) - 2), 0.0
    along = (b - a) / width
    normal = np.array([-along[1], along[0]])
    if normal[1] < 0:  # chains may run either way; "open" is always downwards
        normal = -normal
    diff = points[lower[1:-1], :2] - points[upper[1:-1], :2]
    return diff @ normal, width


def opening(points: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> float:
    """How open a mouth or eye is: its largest gap over its width (0 = closed)."""
    gaps, width = _gaps(points, upper, lower)
    return float(max(gaps.max(), 0.0) / width) if width > 0 else 0.0


def mouth_opening(points: np.ndarray) -> float:
    return opening(points, LIP_UPPER, LIP_LOWER)


def eye_openings(points: np.ndarray) -> tuple[float, float]:
    """Mean lid gap over eye width, per eye (right, left)."""
    out = []
    for upper, lower in EYES:
        gaps, width = _gaps(points, upper, lower)
        out.append(float(max(gaps.mean(), 0.0) / width) if width > 0 else 0.0)
    return out[0], out[1]


def set_lids(points: np.ndarray, reference: np.ndarray, ratios: tuple[float, float]) -> None:
    """Place the upper lids so each eye is ``ratio`` times as open as the reference's.

    The lower lid keeps the driver's motion; the upper lid is set from it, which
    turns a driver's blink into a full blink whatever the two faces' eye shapes.
    The band of lid above the lashes moves with them, so the lid slides down
    (lashes stay sharp) and only the skin under the brow stretches.
    """
    for (upper, lower), band, ratio in zip(EYES, LID_BANDS, ratios, strict=True):
        inner_u, inner_l = upper[1:-1], lower[1:-1]
        gap = reference[inner_u] - reference[inner_l]
        moved = points[inner_l] + gap * ratio
        points[band] += _LID_BAND_FOLLOW * (moved - points[inner_u])
        points[inner_u] = moved


def unfold_lips(points: np.ndarray) -> None:
    """Pressed lips must not cross: pairs past each other meet in the middle."""
    gaps, _ = _gaps(points, LIP_UPPER, LIP_LOWER)
    crossed = np.nonzero(gaps < 0)[0] + 1
    if len(crossed):
        mid = (points[LIP_UPPER[crossed]] + points[LIP_LOWER[crossed]]) / 2
        points[LIP_UPPER[crossed]] = mid
        points[LIP_LOWER[crossed]] = mid


def _roi(poly: np.ndarray, size: int, margin: int = 2) -> tuple[int, int, int, int] | None:
    x0, y0 = np.floor(poly.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + margin + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _fill(canvas: np.ndarray, poly: np.ndarray, colour: tuple[float, ...]) -> None:
    cv2.fillPoly(canvas, [np.round(poly * _ONE).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)


def _blend(
    out: np.ndarray, box: tuple[int, int, int, int], layer: np.ndarray, a: np.ndarray
) -> None:
    x0, y0, x1, y1 = box
    region = out[y0:y1, x0:x1].astype(np.float32)
    a3 = a[..., None]
    out[y0:y1, x0:x1] = (region + (layer.astype(np.float32) - region) * a3).astype(np.uint8)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity taking 2D ``src`` points onto ``dst``."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    den = float(np.sum(np.abs(zs - ms) ** 2))
    a = complex(np.sum(np.conj(zs - ms) * (zd - md)) / den) if den > 1e-9 else 1.0 + 0j
    b = md - a * ms
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float32)


@dataclass(frozen=True)
class Bite:
    """Where the teeth meet, for painting a mouth (output pixels).

    ``edge`` is a point on the reference's closed-lip line, carried with the
    skull; the upper incisors end ``INCISAL_SHOW`` below it. ``jaw`` is how far
    the lower teeth have dropped with the chin. Lips parted with the jaw shut
    (a grin) show teeth from lip to lip; only the jaw's opening shows the dark
    inside.
    """

    edge: np.ndarray  # (2,)
    jaw: float


def _teeth_tone(v: np.ndarray, edge: np.ndarray, height: float, taper: np.ndarray) -> np.ndarray:
    """Brightness of painted teeth at depth ``v`` from the lip they grow from (``edge``):
    shadowed under the lip, darker towards their biting edge and the corners."""
    into = np.clip((v - edge) / max(height, 1e-3), 0, 1)
    tone = (1.0 - 0.3 * into) * (0.65 + 0.35 * taper)
    return tone * (0.7 + 0.3 * np.clip((v - edge) / 2.0, 0.0, 1.0))


def _mouth_frame(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(along, down) unit vectors of a mouth whose upper inner-lip chain is ``up``:
    corner to corner, and its perpendicular pointing down the image."""
    a, b = up[0], up[-1]
    along = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
    down = np.array([-along[1], along[0]])
    return along, (-down if down[1] < 0 else down)


def _cavity(
    h: int,
    w: int,
    up: np.ndarray,
    low: np.ndarray,
    shade: float,
    bite: tuple[float, float] | None,
) -> np.ndarray:
    """The inside of an open mouth, (h, w, 3) float32, for inner-lip chains ``up``/``low``.

    Worked out in the mouth's own frame (u along the corners, v down): a dark
    cavity, lighter near the lips; a tongue low down; and, with ``bite`` (v of
    the closed-lip line carried with the skull, and the jaw's drop, in pixels),
    painted teeth — the upper reaching down to just below that line, the lower
    rising from the lower lip to it plus the jaw's drop, tapering to the
    corners, shadowed under the lip and darker towards their edge. Without it
    (the reference brings its own teeth) none are painted.
    """
    a = up[0]
    width = float(np.linalg.norm(up[-1] - a))
    along, down = _mouth_frame(up)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xs - a[0]) * along[0] + (ys - a[1]) * along[1]
    v = (xs - a[0]) * down[0] + (ys - a[1]) * down[1]
    cu, cv_up = (up - a) @ along, (up - a) @ down
    cl, cv_low = (low - a) @ along, (low - a) @ down
    v_up = np.interp(u, cu, cv_up).astype(np.float32)
    v_low = np.interp(u, cl, cv_low).astype(np.float32)
    gap = np.maximum(v_low - v_up, 1e-3)
    depth = np.clip((v - v_up) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower
    across = np.clip(np.abs(u / max(width, 1e-6) - 0.5) * 2.0, 0.0, 1.0)  # 0 centre, 1 corner
    light = 1.0 - 0.45 * np.sin(np.pi * depth) - 0.35 * across
    img = _CAVITY[None, None, :] * (shade * light)[..., None]
    # Tongue: an ellipse resting on the lower lip.
    mid = float(np.interp(width / 2, cl, cv_low))
    tongue_gap = float(gap.max())
    t = ((u - width / 2) / (0.3 * width)) ** 2 + ((v - mid) / (0.4 * tongue_gap + 1e-3)) ** 2
    k = np.clip((1.0 - t) * 3.0, 0.0, 1.0)[..., None] * 0.8
    img = img + (_TONGUE * shade * 0.8 - img) * k
    if bite is not None:
        tallest = TEETH_HEIGHT * width
        taper = np.sqrt(np.clip(1.0 - (2.0 * across / 1.6) ** 2, 0.0, 1.0))
        edge = bite[0] + INCISAL_SHOW * width
        lower_from = np.maximum(edge + bite[1], v_low - LOWER_TEETH * tallest * taper)
        upper_to = np.minimum(edge, v_up + tallest * taper)
        upper_to = np.minimum(upper_to, np.minimum(lower_from, v_low) - BITE_GAP * gap)
        height = max(float(np.median(upper_to - v_up)), 1.0)
        gaps = np.abs(((u - width / 2) / (0.13 * width)) % 1.0 - 0.5) < 0.04
        central = gaps & (np.abs(u - width / 2) < 0.3 * width)
        upper = (v >= v_up) & (v <= upper_to)
        lower = (v >= lower_from) & (v <= v_low)
        tone_up = _teeth_tone(v, v_up, height, taper)
        tone_low = LOWER_SHADE * _teeth_tone(-v, -v_low, height, taper)
        tone = np.where(upper, tone_up, tone_low)
        tone = np.where(central, tone * 0.82, tone)
        teeth_rgb = _UPPER_TEETH * min(shade, 1.0) * tone[..., None]
        img = np.where((upper | lower)[..., None], teeth_rgb, img)
    return np.clip(img, 0, 255).astype(np.float32)


def _lip_offsets(
    m: np.ndarray,
    up: np.ndarray,
    src_up: np.ndarray,
    along: np.ndarray,
    along_s: np.ndarray,
    down_s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """How far (source pixels, along the source mouth's down ``down_s``) each target
    upper-lip point lands off the reference's own upper lip through ``m``, against its
    target along-position (sorted): what a similarity cannot bend. ``along`` /
    ``along_s``: the target's and the reference's mouth directions (``_mouth_frame``)."""
    mapped = up @ m[:, :2].T + m[:, 2]
    u_m, v_m = (mapped - src_up[0]) @ along_s, (mapped - src_up[0]) @ down_s
    u_s, v_s = (src_up - src_up[0]) @ along_s, (src_up - src_up[0]) @ down_s
    order_s = np.argsort(u_s)
    offset = np.interp(u_m, u_s[order_s], v_s[order_s]) - v_m
    u_t = (up - up[0]) @ along
    order = np.argsort(u_t)
    return u_t[order], offset[order]


def _hang(
    canvas: np.ndarray,
    reference: np.ndarray,
    m: np.ndarray,
    region: np.ndarray,
    box: tuple[int, int, int, int],
    lips: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """``canvas`` (the output ``box``) with the reference's pixels inside ``region``
    (a polygon in reference pixels) laid over it through the target → reference map
    ``m``, each column shifted along the mouth so that the target's upper lip
    (``lips[0]``, output pixels) meets the reference's (``lips[1]``): a lip that rises
    in the middle as the mouth opens would otherwise leave a dark band over teeth that
    keep the reference's lip curve."""
    up, src_up = lips
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    along, _ = _mouth_frame(up)
    along_s, down_s = _mouth_frame(src_up)
    u_lip, offset = _lip_offsets(m, up, src_up, along, along_s, down_s)
    u = (xs - up[0, 0]) * along[0] + (ys - up[0, 1]) * along[1]
    shift = np.interp(u, u_lip, offset).astype(np.float32)
    sx += shift * np.float32(down_s[0])
    sy += shift * np.float32(down_s[1])
    layer = cv2.remap(reference, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # The region's own mask, in reference pixels around it, sampled the same way.
    rx0, ry0 = np.floor(region.min(axis=0)).astype(int) - 2
    rx1, ry1 = np.ceil(region.max(axis=0)).astype(int) + 3
    own = np.zeros((max(ry1 - ry0, 1), max(rx1 - rx0, 1)), dtype=np.uint8)
    _fill(own, region - np.array([rx0, ry0], dtype=np.float32), (255.0,))
    a = cv2.remap(
        own,
        sx - np.float32(rx0),
        sy - np.float32(ry0),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0.0,),
    )
    a = cv2.GaussianBlur(a, (3, 3), 0).astype(np.float32)[..., None] / 255.0
    return canvas + (layer.astype(np.float32) - canvas) * a


def _stretched(
    m: np.ndarray,
    up: np.ndarray,
    low: np.ndarray,
    src_up: np.ndarray,
    src_low: np.ndarray,
    most: float,
) -> np.ndarray:
    """The target → reference map ``m`` (fixed by the upper lip) stretched down
    from the upper lip so the reference's opening grows with the target's, by
    up to ``most`` times."""
    _, down = _mouth_frame(up)
    mid = len(up) // 2
    gap_t = float((low[mid] - up[mid]) @ down) * float(np.hypot(m[0, 0], m[1, 0]))
    gap_s = float(np.linalg.norm(src_low[mid] - src_up[mid]))
    k = float(np.clip(gap_t / max(gap_s, 1e-6), 1.0, most))
    d = down.astype(np.float32)
    u = np.eye(2, dtype=np.float32) - np.float32(1 - 1 / k) * np.outer(d, d)
    shift = np.float32(1 - 1 / k) * float(up[mid] @ down) * d
    out = m.copy()
    out[:, :2] = m[:, :2] @ u
    out[:, 2] = m[:, :2] @ shift + m[:, 2]
    return out


def paint_mouth(
    out: np.ndarray,
    points: np.ndarray,
    strength: float,
    shade: float,
    reference: np.ndarray,
    source: np.ndarray,
    bite: Bite | None,
) -> None:
    """Paint the inner-lip opening of ``points`` (output pixels) into ``out``.

    ``strength`` in [0, 1] fades the painting in as the mouth opens. With a
    ``bite`` teeth are painted there, meeting where it says (``_cavity``); with
    none (the reference shows its own teeth), the reference's mouth interior
    (``reference`` image, ``source`` landmarks) hangs from the upper lip,
    stretched down by up to ``TEETH_STRETCH`` as the mouth opens past the
    reference's.
    """
    if strength <= 0.0:
        return
    upper, lower = points[LIP_UPPER, :2], points[LIP_LOWER, :2]
    poly = np.concatenate([upper, lower[-2:0:-1]])
    box = _roi(poly, out.shape[0])
    if box is None:
        return
    x0, y0, x1, y1 = box
    origin = np.array([x0, y0], dtype=np.float32)
    h, w = y1 - y0, x1 - x0
    in_frame = None
    if bite is not None:
        in_frame = (float((bite.edge - upper[0]) @ _mouth_frame(upper)[1]), max(bite.jaw, 0.0))
    canvas = cv2.GaussianBlur(
        _cavity(h, w, upper - origin, lower - origin, shade, in_frame), (3, 3), 0
    )
    if bite is None:
        # The reference's own interior hangs from the upper lip, as upper teeth do
        # from the skull, and stretches down as the mouth opens wider than the
        # reference's: a dark cavity under a strip of teeth read as another face.
        src_up, src_low = source[LIP_UPPER, :2], source[LIP_LOWER, :2]
        m = _stretched(_similarity(upper, src_up), upper, lower, src_up, src_low, TEETH_STRETCH)
        region = np.concatenate([src_up, src_low[-2:0:-1]])
        canvas = _hang(canvas, reference, m, region, box, (upper, src_up))
    mask = np.zeros((h, w), dtype=np.uint8)
    _fill(mask, poly - origin, (255.0,))
    soft = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32)
    _blend(out, box, canvas, soft * (strength / 255.0))


def eye_box(points: np.ndarray, eye: int) -> tuple[int, int, int, int]:
    """An output box (x0, y0, x1, y1) around eye ``eye`` (0 right, 1 left) and its lids."""
    upper, lower = EYES[eye]
    pts = points[np.concatenate([upper, lower, LID_BANDS[eye]]), :2]
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 4
    return int(x0), int(y0), int(x1), int(y1)


def _soften(out: np.ndarray, box: tuple[int, int, int, int], amount: float) -> None:
    """Blur a closing eye a little: the lid line, where the map jumps, is stair-stepped."""
    size = out.shape[0]
    x0, y0, x1, y1 = max(box[0], 0), max(box[1], 0), min(box[2], size), min(box[3], size)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    region = out[y0:y1, x0:x1]
    blurred = cv2.GaussianBlur(region, (3, 3), 0)
    a = np.full(region.shape[:2], float(np.clip(amount, 0.0, 1.0)), dtype=np.float32)
    _blend(out, (x0, y0, x1, y1), blurred, a)


def _eye_frame(points: np.ndarray, eye: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(origin, along, down, width) of an eye: the line between its corners, running
    image-left to image-right for both eyes, and its perpendicular pointing down."""
    upper, _ = EYES[eye]
    a, b = points[upper[0], :2], points[upper[-1], :2]
    if eye == 1:  # the left eye's chain runs outer (image right) to inner
        a, b = b, a
    width = float(np.linalg.norm(b - a))
    along = (b - a) / max(width, 1e-6)
    return a, along, np.array([-along[1], along[0]]), width


def gaze(points: np.ndarray, eye: int) -> np.ndarray:
    """Where eye ``eye``'s iris centre sits between its corners: (along, down) in eye widths."""
    a, along, down, width = _eye_frame(points, eye)
    rel = points[IRIS_CENTRES[eye], :2] - a
    return np.array([rel @ along, rel @ down]) / max(width, 1e-6)


#: How far the iris centre may go, in eye widths: along the corner line, and off it.
GAZE_ALONG = (0.2, 0.8)
GAZE_ACROSS = 0.2
#: Nor further into a corner than where the reference's opening is this share of its
#: height at the iris's rest place: the lids narrow there and hide the iris, and sent
#: past it on the narrow-eyed s1 the iris read as looking *less* far by dlib (0.57 of
#: the driver's look at ``gaze_gain`` 1, 0.45 at 1.4; 0.52 with this limit).
IRIS_VISIBLE = 0.75
_ALONG_STEPS = np.linspace(0.0, 1.0, 41)


#: Per eye of a reference, the along-positions (eye widths) its iris centre may take.
GazeSpans = tuple[tuple[float, float], tuple[float, float]]


def gaze_spans(reference: np.ndarray) -> GazeSpans:
    """Each eye's ``_gaze_span`` around its rest gaze: computed once per portrait."""
    right, left = (_gaze_span(reference, eye, float(gaze(reference, eye)[0])) for eye in (0, 1))
    return right, left


def _gaze_span(reference: np.ndarray, eye: int, rest: float) -> tuple[float, float]:
    """The along-positions (eye widths) between which the reference's eye ``eye`` is at
    least ``IRIS_VISIBLE`` as open as at ``rest``, within ``GAZE_ALONG``."""
    upper, lower = EYES[eye]
    heights = _lids_at(reference, lower, eye, _ALONG_STEPS) - _lids_at(
        reference, upper, eye, _ALONG_STEPS
    )
    at_rest = float(np.interp(rest, _ALONG_STEPS, heights))
    open_enough = _ALONG_STEPS[heights >= IRIS_VISIBLE * at_rest]
    lo, hi = GAZE_ALONG
    if len(open_enough) == 0:
        return lo, hi
    return max(lo, min(float(open_enough.min()), rest)), min(
        hi, max(float(open_enough.max()), rest)
    )


def set_gaze(
    points: np.ndarray, reference: np.ndarray, shift: np.ndarray, spans: GazeSpans
) -> None:
    """Move each iris of ``points`` to the reference's gaze plus ``shift`` (eye widths,
    (along, down)), kept inside the eye where its opening shows it (``spans``, from
    ``gaze_spans(reference)``); the iris ring moves with its centre."""
    for eye, centre in enumerate(IRIS_CENTRES):
        g = gaze(reference, eye) + shift
        g[0] = np.clip(g[0], *spans[eye])
        g[1] = np.clip(g[1], -GAZE_ACROSS, GAZE_ACROSS)
        a, along, down, width = _eye_frame(points, eye)
        new = a + (g[0] * along + g[1] * down) * width
        points[centre : centre + 5, :2] += new - points[centre, :2]


def _lid_at(points: np.ndarray, chain: np.ndarray, eye: int, along_at: float) -> float:
    """How far down (eye widths, in the eye's frame) lid ``chain`` of eye ``eye`` runs
    at ``along_at`` eye widths from the image-left corner."""
    return float(_lids_at(points, chain, eye, np.array([along_at]))[0])


def _lids_at(points: np.ndarray, chain: np.ndarray, eye: int, along_at: np.ndarray) -> np.ndarray:
    """``_lid_at`` at each of the positions ``along_at``."""
    a, along, down, width = _eye_frame(points, eye)
    rel = points[chain, :2] - a
    u, v = rel @ along / max(width, 1e-6), rel @ down / max(width, 1e-6)
    order = np.argsort(u)
    return np.interp(along_at, u[order], v[order])


#: How far (iris radii) a lowered upper lid may come past the iris's centre before it
#: takes the iris down: at least three quarters of a radius of iris shows under it.
#: Taken down from the centre on, a calm driver's squints (d19) read as less narrowed
#: on s12, by dlib (eyes r 0.73 → 0.68) and mediapipe (0.84 → 0.70); from 0.25, 0.73
#: and 0.76, with the same gain in gaze on a driver looking down (d3).
IRIS_SHOWN = 0.25


def keep_iris_in_view(points: np.ndarray) -> None:
    """Keep each iris of ``points`` showing under its upper lid: a lid lowered past
    ``IRIS_SHOWN`` radii above the iris's centre takes the iris down with it.

    A driver looking down lowers the upper lid and the iris with it; mediapipe's
    vertical iris estimate is not trusted then (it rides on the lids), so the
    iris would stay at rest height and the slit left open show the white under
    it: eyes rolled up (issue 18, seen on a driver reading).
    """
    for eye in (0, 1):
        upper, _ = EYES[eye]
        centre = IRIS_CENTRES[eye]
        a, along, down, width = _eye_frame(points, eye)
        rel = (points[centre, :2] - a) / max(width, 1e-6)
        radius = eyeball.iris_radius(points, centre, width) / max(width, 1e-6)
        lid = _lid_at(points, upper, eye, float(rel @ along))
        below = lid - IRIS_SHOWN * radius - float(rel @ down)
        if below > 0:
            points[centre : centre + 5, :2] += below * width * down


def paint_eyes(
    out: np.ndarray,
    target: np.ndarray,
    source: np.ndarray,
    openness: tuple[float, float],
    eyeballs: tuple[Eyeball, Eyeball],
) -> None:
    """Fill each target eye opening with the reference's eye white and its iris.

    ``target`` / ``source``: landmarks in output / BASE pixels; ``openness``
    is each eye's opening relative to the reference's (1 = as open). The iris
    goes where the target's iris landmark is (``set_gaze``).
    """
    size = out.shape[0]
    for eye, ((upper, lower), open_, ball) in enumerate(zip(EYES, openness, eyeballs, strict=True)):
        if open_ < 0.6:
            _soften(out, eye_box(target, eye), 1.0 - open_ / 0.6)
        # A shut eye's outline would still be drawn by the anti-aliased fill.
        fade = float(np.clip((open_ - 0.04) / 0.12, 0.0, 1.0))
        if fade <= 0.0:
            continue
        poly = target[loop(upper, lower), :2]
        box = _roi(poly, size)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        _fill(mask, poly - np.array([x0, y0], dtype=np.float32), (255.0,))
        if not mask.any():
            continue
        layer = eyeball.render(ball, target, source, eye, box)
        _blend(out, box, layer, mask.astype(np.float32) * (fade / 255.0))
