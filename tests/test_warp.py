"""The ``warp`` face backend with real faces: re-detect landmarks on what it renders.

Drivers are real frames of the driving videos in ``shared/media`` (found by
the driver's own landmarks: neutral, open mouth, blink) and, for head roll, a
real frame turned in the image plane. The videos hold no large head turn, so
the yaw test moves a real frame's landmarks in 3D instead. Gaze and wide eyes
are read with an independent face model (dlib, tests/dlib_face.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from scipy.spatial import Delaunay
from skimage import data

from mirage.models import create_animator
from mirage.models.avatar.reference import default_reference
from mirage.models.avatar.warp import brows, unavailable_reason
from mirage.models.avatar.warp.animator import WarpAnimator, WarpConfig
from mirage.models.avatar.warp.eyeball import iris_radius
from mirage.models.avatar.warp.features import _eye_frame, _lid_at, eye_box, eye_openings, gaze
from mirage.models.avatar.warp.meshwarp import (
    WarpGrid,
    backward_map,
    distortion,
    triangle_affines,
    warp,
)
from mirage.models.avatar.warp.portrait import BASE
from mirage.models.avatar.warp.pose import euler_degrees, face_width, fit_similarity, pivot
from mirage.models.avatar.warp.smoothing import OneEuroConfig, OneEuroFilter
from mirage.models.avatar.warp.topology import (
    EYES,
    IRIS_CENTRES,
    LID_BANDS,
    LIP_LOWER,
    LIP_UPPER,
    RIGID,
    face_triangles,
    loop,
)
from mirage.models.base import BadInput, FaceAnimator, NoFaceError
from mirage.models.face.mesh import FaceLandmarks, FaceMesh
from mirage.models.registry import available
from tests.conftest import MEDIA
from tests.dlib_face import DlibFace, Signals, signals

NEUTRAL = (0, 1, 2)  # d0: a still, closed-mouth start
MOUTH = 48  # d0: mouth open (inner-lip gap ≈ 0.18 of the eye-corner distance)
BLINK = 66  # d0: both eyes shut
LOOK_RIGHT = (
    15  # d0: the driver looks to the image right (dlib pupil 0.68 of the eye, 0.51 at rest)
)
LOOK_LEFT = 33  # d0: … and to the image left (0.30)
NARROW = 46  # d0: eyes narrower than at the start (dlib eye aspect 0.24 against 0.35)
FPS = 25.0


class FakeClock:
    """A 25 fps video clock: each call is one frame later."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0 / FPS
        return self.t


def _rgb(path: str) -> np.ndarray:
    image = cv2.imread(str(MEDIA / path))
    assert image is not None, f"cannot read {MEDIA / path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _frames(name: str, last: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(MEDIA / name))
    frames = []
    for _ in range(last + 1):
        ok, frame = cap.read()
        assert ok, f"{name} ended early"
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def detector() -> Iterator[FaceMesh]:
    mesh = FaceMesh(static=True)
    yield mesh
    mesh.close()


def _face(detector: FaceMesh, image: np.ndarray) -> FaceLandmarks:
    face = detector.detect(image)
    assert face is not None, "no face found in the rendered avatar"
    return face


def _aperture(points: np.ndarray) -> float:
    """Inner-lip gap over the eye-corner distance (pose- and size-independent)."""
    return float(np.linalg.norm(points[13, :2] - points[14, :2]) / face_width(points))


def _pose(neutral: np.ndarray, now: np.ndarray) -> tuple[float, float, float]:
    return euler_degrees(fit_similarity(neutral[RIGID], now[RIGID]).rotation)


@dataclass
class Run:
    """One pass of d0 through an animator, with the frames the tests look at."""

    driver: list[np.ndarray]
    rest: np.ndarray  # the avatar while the neutral pose is taken
    outputs: dict[int, np.ndarray]
    reference_512: np.ndarray
    animator: WarpAnimator


def _play(reference: np.ndarray, frames: list[np.ndarray], keep: set[int]) -> Run:
    animator = create_animator("warp", clock=FakeClock())
    assert isinstance(animator, WarpAnimator)
    animator.set_reference(reference)
    outputs = {}
    rest = np.empty(0)
    for i, frame in enumerate(frames):
        out = animator.animate(frame, 512)
        if i == NEUTRAL[-1]:
            rest = out
        if i in keep:
            outputs[i] = out
    return Run(frames, rest, outputs, animator.portrait.at(512, 2).image, animator)


@pytest.fixture(scope="module")
def d0() -> list[np.ndarray]:
    return _frames("d0.mp4", BLINK)


@pytest.fixture(scope="module")
def s0_run(d0: list[np.ndarray]) -> Run:
    """s0 (closed mouth, open eyes) driven by d0 up to the blink."""
    return _play(_rgb("s0.jpg"), d0, {MOUTH, BLINK})


@pytest.fixture(scope="module")
def astronaut_run(d0: list[np.ndarray]) -> Run:
    """The default portrait driven by d0 up to the blink."""
    return _play(default_reference(), d0, {BLINK})


# -- the registry, options and errors ----------------------------------------------------


def test_made_by_the_registry() -> None:
    assert unavailable_reason(None) is None
    assert available("face")["warp"] is None
    animator = create_animator("warp")
    assert isinstance(animator, WarpAnimator)
    assert isinstance(animator, FaceAnimator)
    animator.close()


def test_bad_options_and_inputs() -> None:
    with pytest.raises(BadInput, match="unknown warp option"):
        create_animator("warp", no_such_option=1)
    with pytest.raises(BadInput, match="grid"):
        create_animator("warp", grid=3)
    with pytest.raises(BadInput, match="neutral_frames"):
        create_animator("warp", neutral_frames=0)
    for gain in (-0.5, 3.5):
        with pytest.raises(BadInput, match="gaze_gain"):
            create_animator("warp", gaze_gain=gain)
    for gain in (0.4, 2.6):  # past 1 / (1 - knee) a squint would shut the eye
        with pytest.raises(BadInput, match="lid_gain"):
            create_animator("warp", lid_gain=gain)
        with pytest.raises(BadInput, match="lid_gain"):
            WarpConfig(lid_gain=gain)  # the Python API checks it too
    for gain in (-0.1, 4.5):
        with pytest.raises(BadInput, match="brow_gain"):
            WarpConfig(brow_gain=gain)
    for depth in (0.1, 3.5):
        with pytest.raises(BadInput, match="max_depth"):
            create_animator("warp", max_depth=depth)
        with pytest.raises(BadInput, match="max_depth"):
            WarpConfig(max_depth=depth)
    animator = create_animator("warp")
    frame = data.astronaut()
    for size in (0, 16, 4096, 256.0, "512"):
        with pytest.raises(BadInput, match="size"):
            animator.animate(frame, size)  # type: ignore[arg-type]
    for bad in (frame.astype(np.float32), frame[..., 0], frame[:10, :10], "frame"):
        with pytest.raises(BadInput):
            animator.animate(bad, 256)  # type: ignore[arg-type]
    with pytest.raises(BadInput):
        animator.set_reference(frame[..., :2])


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(lambda: data.coffee(), id="coffee"),
        pytest.param(
            lambda: np.dstack([np.tile(np.linspace(0, 255, 400), (300, 1)).astype(np.uint8)] * 3),
            id="gradient",
        ),
    ],
)
def test_reference_without_a_face(image: Callable[[], np.ndarray]) -> None:
    animator = create_animator("warp")
    with pytest.raises(NoFaceError, match="no face") as info:
        animator.set_reference(image())
    assert info.value.status == 422


def test_default_reference_and_sizes() -> None:
    portrait = default_reference()
    assert portrait.shape == (512, 512, 3) and portrait.dtype == np.uint8
    animator = create_animator("warp")  # no reference set: the default is used
    driver = data.coffee()  # no face in the driver: the avatar at rest
    for size in (512, 384, 256):
        out = animator.animate(driver, size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        assert out.mean() > 40  # a picture, not a black frame


def test_largest_face_is_the_reference() -> None:
    s12 = cv2.resize(_rgb("s12.jpg"), (240, 320), interpolation=cv2.INTER_AREA)
    s0 = cv2.resize(_rgb("s0.jpg"), (420, 493), interpolation=cv2.INTER_AREA)
    canvas = np.full((503, 680, 3), 128, dtype=np.uint8)
    canvas[:493, :420] = s0
    canvas[:320, 440:] = s12  # s12's face is the larger one here
    animator = create_animator("warp")
    animator.set_reference(canvas)
    left, _top, side = animator.portrait.crop  # the crop is centred on the chosen face
    assert left + side / 2 > 440


@pytest.mark.parametrize("side", [256, 128])
def test_landmarks_in_the_shrunk_drivers_pixels(
    d0: list[np.ndarray], detector: FaceMesh, side: int
) -> None:
    """A driver larger than ``landmark_side`` gives landmarks in the pixels of the
    driver shrunk to that side, whether it goes to mediapipe whole (480 px for 256)
    or pre-shrunk (for 128, past twice the side)."""
    frame = d0[0]
    h, w = frame.shape[:2]
    k = side / max(h, w)
    small = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    expected = _face(detector, small).points
    animator = WarpAnimator(landmark_side=side)
    try:
        found = animator._landmarks(frame)
    finally:
        animator.close()
    assert found is not None
    err = np.abs(found.points[:, :2] - expected[:, :2]).max(axis=1)
    assert float(np.median(err)) < 0.02 * face_width(expected)
    assert np.allclose(found.box, _face(detector, small).box, atol=0.03 * face_width(expected))


# -- motion carried from the driver to the avatar ----------------------------------------


def test_mouth_opens_like_the_driver(s0_run: Run, detector: FaceMesh) -> None:
    drv_rest = _face(detector, s0_run.driver[NEUTRAL[0]]).points
    drv_open = _face(detector, s0_run.driver[MOUTH]).points
    driver_growth = _aperture(drv_open) - _aperture(drv_rest)
    assert driver_growth > 0.12  # the frame really shows an open mouth
    av_rest = _face(detector, s0_run.rest).points
    av_open = _face(detector, s0_run.outputs[MOUTH]).points
    avatar_growth = _aperture(av_open) - _aperture(av_rest)
    assert 0.5 * driver_growth < avatar_growth < 2.0 * driver_growth
    # The opening is a dark cavity, not stretched lip texture.
    inner = _face(detector, s0_run.outputs[MOUTH]).points
    lips = np.round(inner[[78, 81, 13, 311, 308, 402, 14, 178], :2]).astype(np.int32)
    mask = np.zeros((512, 512), dtype=np.uint8)
    cv2.fillPoly(mask, [lips], (255,))
    grey = cv2.cvtColor(s0_run.outputs[MOUTH], cv2.COLOR_RGB2GRAY)
    skin = np.median(grey[mask == 0][::97])
    assert np.percentile(grey[mask > 0], 25) < 0.6 * skin


def _opening_shares(run: Run, frame: int) -> tuple[float, float]:
    """Shares of dark (cavity) and bright (teeth) pixels inside the avatar's inner lips."""
    assert run.animator._target is not None
    target = run.animator._target[:478]
    poly = np.concatenate([target[LIP_UPPER, :2], target[LIP_LOWER[-2:0:-1], :2]])
    mask = np.zeros((512, 512), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (255,))
    grey = cv2.cvtColor(run.outputs[frame], cv2.COLOR_RGB2GRAY)[mask > 0]
    return float((grey < 70).mean()), float((grey > 150).mean())


@pytest.mark.parametrize(
    ("which", "most_dark", "least_bright", "identity"),
    [("astronaut", 0.2, 0.5, 0.41), ("s1", 0.55, 0.12, 0.43)],
)
def test_an_open_mouth_shows_teeth_and_keeps_the_face(
    d0: list[np.ndarray],
    dlib_face: DlibFace,
    which: str,
    most_dark: float,
    least_bright: float,
    identity: float,
) -> None:
    """d0's grin on a portrait that shows its teeth (the astronaut) opens onto those
    teeth, stretched down, and on one that does not (s1) onto painted ones: a dark
    hole under a strip of teeth read as another person (dlib identity 0.435 and 0.44
    before, 0.37 and 0.40 after; dark share 0.39 and 0.68, now 0.08 and 0.45). The
    grin also narrows the driver's eyes (dlib 0.67 of rest): with ``lid_gain`` 1.8
    s1's narrow to 0.55 (0.70 at 1) and its identity reads 0.426 (0.40 at 1)."""
    reference = default_reference() if which == "astronaut" else _rgb(f"{which}.jpg")
    run = _play(reference, d0[: MOUTH + 1], {MOUTH})
    dark, bright = _opening_shares(run, MOUTH)
    assert dark < most_dark and bright > least_bright
    ref, now = dlib_face.descriptor(reference), dlib_face.descriptor(run.outputs[MOUTH])
    assert ref is not None and now is not None
    assert float(np.linalg.norm(now - ref)) < identity


@pytest.mark.parametrize("which", ["s0", "astronaut"])
def test_blink_closes_the_avatars_eyes(
    s0_run: Run, astronaut_run: Run, detector: FaceMesh, which: str
) -> None:
    run = s0_run if which == "s0" else astronaut_run
    drv_rest = eye_openings(_face(detector, run.driver[NEUTRAL[0]]).points)
    drv_shut = eye_openings(_face(detector, run.driver[BLINK]).points)
    assert max(drv_shut[0] / drv_rest[0], drv_shut[1] / drv_rest[1]) < 0.35
    av_rest = np.array(eye_openings(_face(detector, run.rest).points))
    av_shut = np.array(eye_openings(_face(detector, run.outputs[BLINK]).points))
    assert (av_rest > 0.15).all()  # the portraits' eyes are open at rest
    # The landmark model reads painted-shut lids less surely than real ones: both
    # eyes together must read well under half open, each clearly less open.
    ratio = av_shut / av_rest
    assert ratio.mean() < 0.6 and (ratio < 0.75).all()


def test_background_stays_and_face_stays_in_place(s0_run: Run, detector: FaceMesh) -> None:
    reference = s0_run.reference_512
    x0, y0, x1, y1 = s0_run.animator.portrait.box
    cx, cy, size = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    ys, xs = np.mgrid[0:512, 0:512]
    far = np.maximum(np.abs(xs - cx), np.abs(ys - cy)) > 1.3 * size
    assert far.mean() > 0.05, "the test needs some background far from the face"
    for i in (MOUTH, BLINK):
        out = s0_run.outputs[i]
        diff = np.abs(out.astype(np.int16) - reference.astype(np.int16)).max(axis=2)
        assert diff[far].mean() < 1.0 and np.percentile(diff[far], 99.5) < 8
        assert diff[~far].mean() > 0.5  # …while the face did move
        fx0, fy0, fx1, fy1 = _face(detector, out).box
        margin = 0.2 * size
        assert x0 - margin < fx0 and fx1 < x1 + margin
        assert y0 - margin < fy0 and fy1 < y1 + margin


def _turned(frame: np.ndarray, degrees: float) -> np.ndarray:
    h, w = frame.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("degrees", [14.0, -14.0])
def test_head_roll_follows(d0: list[np.ndarray], detector: FaceMesh, degrees: float) -> None:
    animator = create_animator("warp", clock=FakeClock(), reference=default_reference())
    for i in NEUTRAL:
        rest = animator.animate(d0[i], 512)
    turned = _turned(d0[NEUTRAL[-1]], degrees)
    for _ in range(12):  # hold the pose until smoothing has settled
        out = animator.animate(turned, 512)
    drv = _pose(_face(detector, d0[NEUTRAL[-1]]).points, _face(detector, turned).points)
    av = _pose(_face(detector, rest).points, _face(detector, out).points)
    assert abs(drv[2]) > 10
    assert np.sign(av[2]) == np.sign(drv[2])
    assert 0.6 * abs(drv[2]) < abs(av[2]) < 1.5 * abs(drv[2])


def _head_turned(points: np.ndarray, degrees: float, axis: str = "yaw") -> np.ndarray:
    """``points`` with the head turned about its vertical axis (``yaw``) or nodding
    about its horizontal one (``pitch``), through the neck."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "yaw":
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    else:
        rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    p = pivot(points)
    return ((points - p) @ rot.T + p).astype(np.float32)


@pytest.mark.parametrize("degrees", [20.0, -20.0])
def test_head_yaw_follows(
    d0: list[np.ndarray], detector: FaceMesh, degrees: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    animator = create_animator("warp", clock=FakeClock(), reference=default_reference())
    assert isinstance(animator, WarpAnimator)
    for i in NEUTRAL:
        rest = animator.animate(d0[i], 512)
    real = _face(detector, d0[NEUTRAL[-1]])
    turned = FaceLandmarks(_head_turned(real.points, degrees), real.box, 1.0)
    monkeypatch.setattr(animator, "_landmarks", lambda driver: turned)
    for _ in range(12):
        out = animator.animate(d0[NEUTRAL[-1]], 512)
    av = _pose(_face(detector, rest).points, _face(detector, out).points)
    assert np.sign(av[0]) == np.sign(degrees)
    assert 0.4 * abs(degrees) < abs(av[0]) < 1.5 * abs(degrees)


@pytest.mark.parametrize(("turn", "degrees"), [("yaw", 25.0), ("yaw", -25.0), ("pitch", 20.0)])
def test_a_turned_head_does_not_tear_the_face(
    d0: list[np.ndarray],
    detector: FaceMesh,
    dlib_face: DlibFace,
    turn: str,
    degrees: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Turned 25° (the most a webcam user turns while still facing the call), the
    portrait's face neither folds over itself nor smears its sides into streaks,
    and dlib still sees the same person. s12 is the shared portrait whose sides
    mediapipe puts deepest (1.3 face widths behind the nose tip). Measured: with
    the depth held at 0.8 face widths, yaw ±25° folds 366 / 128 px² and stretches
    85 / 314 px² (pitch 20°: 40 / 12); turned with the whole depth
    (``max_depth=3``) it folds 1318 / 1554 px² and stretches 1864 / 1652 px² (pitch
    20° tears little either way: 66 / 73 px²)."""
    reference = _rgb("s12.jpg")
    animator = create_animator("warp", clock=FakeClock(), reference=reference, idle=0)
    assert isinstance(animator, WarpAnimator)
    for i in NEUTRAL:
        animator.animate(d0[i], 512)
    real = _face(detector, d0[NEUTRAL[-1]])
    moved = _head_turned(real.points, degrees, turn)
    monkeypatch.setattr(animator, "_landmarks", lambda driver: FaceLandmarks(moved, real.box, 1.0))
    for _ in range(12):
        out = animator.animate(d0[NEUTRAL[-1]], 512)
    target = animator.target_mesh
    assert target is not None
    tear = distortion(animator.portrait.mesh.vertices, target, face_triangles()[0])
    assert tear.folded < 500 and tear.stretched < 500, tear
    ref, now = dlib_face.descriptor(reference), dlib_face.descriptor(out)
    assert ref is not None and now is not None
    assert float(np.linalg.norm(ref - now)) < 0.45


BROWS = np.array([70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 300, 293, 334, 296, 336, 276, 283,
                  282, 295, 285])  # fmt: skip


def _brow_height(points: np.ndarray) -> float:
    """Brows above the upper lids, over the eye-corner distance."""
    lids = points[[159, 386], 1].mean()
    return float((lids - points[BROWS, 1].mean()) / face_width(points))


def _raise_brows(
    portrait: str, d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> tuple[np.ndarray, np.ndarray, float]:
    """The avatar at rest and with the driver's brows raised by an eighth of the
    eye-corner distance (a surprised driver), and the driver's rise (mediapipe)."""
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb(portrait), idle=0)
    assert isinstance(animator, WarpAnimator)
    for i in NEUTRAL:
        rest = animator.animate(d0[i], 512)
    real = _face(detector, d0[NEUTRAL[-1]])
    raised = real.points.copy()
    raised[BROWS, 1] -= 0.12 * face_width(raised)
    driver_rise = _brow_height(raised) - _brow_height(real.points)
    monkeypatch.setattr(animator, "_landmarks", lambda driver: FaceLandmarks(raised, real.box, 1.0))
    for _ in range(12):
        out = animator.animate(d0[NEUTRAL[-1]], 512)
    return rest, out, driver_rise


def test_eyebrows_raise_with_the_driver(
    d0: list[np.ndarray],
    detector: FaceMesh,
    dlib_face: DlibFace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rest, out, driver_rise = _raise_brows("s12.jpg", d0, detector, monkeypatch)
    avatar_rise = _brow_height(_face(detector, out).points) - _brow_height(
        _face(detector, rest).points
    )
    assert 0.4 * driver_rise < avatar_rise < 2.0 * driver_rise
    # dlib, another model, sees the brows go up too (same unit: eye-corner distances).
    dlib_rise = _dlib(dlib_face, out).brow - _dlib(dlib_face, rest).brow
    assert 0.4 * driver_rise < dlib_rise < 2.0 * driver_rise


def test_a_large_brow_raise_is_not_doubled(
    d0: list[np.ndarray],
    detector: FaceMesh,
    dlib_face: DlibFace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A strong raise shows about as far on the avatar, not twice: ``brow_gain`` lifts
    small brow motions, which mediapipe under-reads, not large ones, which it reads in
    full (brows.KNEE).

    Measured on s0, avatar over driver: mediapipe 1.00, dlib 1.02; with the gain
    applied to the whole motion 1.30 and 1.20 (and on an expressive driver, d11, a
    forehead dragged up by up to a fifth of a face width).
    """
    rest, out, driver_rise = _raise_brows("s0.jpg", d0, detector, monkeypatch)
    shown = _brow_height(_face(detector, out).points) - _brow_height(_face(detector, rest).points)
    seen = _dlib(dlib_face, out).brow - _dlib(dlib_face, rest).brow
    assert 0.7 * driver_rise < shown < 1.15 * driver_rise
    assert 0.7 * driver_rise < seen < 1.15 * driver_rise


def _brows_moved(image: np.ndarray, points: np.ndarray, lift: float, inner: bool) -> np.ndarray:
    """``image`` with the skin around each brow moved up by ``lift`` face widths (down
    if negative), falling off smoothly (the eyes below hardly move): a real face whose
    brows are raised, or lowered about their inner ends (a frown)."""
    h, w = image.shape[:2]
    unit = face_width(points)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w), dtype=np.float32)
    for brow in (BROWS[:10], BROWS[10:]):
        centre = points[brow[[4, 9]] if inner else brow, :2].mean(axis=0)
        d2 = ((xs - centre[0]) / (0.35 * unit)) ** 2 + ((ys - centre[1]) / (0.2 * unit)) ** 2
        field = np.maximum(field, np.exp(-d2))
    return cv2.remap(image, xs, ys + np.float32(lift * unit) * field, cv2.INTER_LINEAR)


@pytest.mark.parametrize(
    ("portrait", "lift", "inner"),
    [("s1.jpg", 0.06, False), ("s0.jpg", -0.05, True)],
    ids=["raise-s1", "frown-s0"],
)
def test_brows_follow_a_real_drivers_raise_and_frown(
    d0: list[np.ndarray],
    detector: FaceMesh,
    dlib_face: DlibFace,
    portrait: str,
    lift: float,
    inner: bool,
) -> None:
    """A driver frame whose brows are raised (or lowered at the inner ends) moves the
    avatar's brows as far, as dlib and mediapipe (re-reading the pixels) read both.

    Measured (dlib / mediapipe, avatar over driver): raise 1.70 / 1.98 on s1 (0.94 /
    0.68 with ``brow_gain=0``, the raw landmark delta alone); frown 1.18 / 1.07 on
    s0 (0.94 / 0.51 with ``brow_gain=0``). Since the eyes show the portrait's own
    (eyeball.py) dlib's brow fit no longer tells the gain from none (astronaut's
    frown: 0.58 against 0.61; painted eyes: 0.95 against 0.46), so mediapipe is
    the judge that fails without it.
    """
    reference = default_reference() if portrait == "astronaut" else _rgb(portrait)
    animator = create_animator("warp", clock=FakeClock(), reference=reference, idle=0)
    assert isinstance(animator, WarpAnimator)
    for i in NEUTRAL:
        rest = animator.animate(d0[i], 512)
    still = d0[NEUTRAL[-1]]
    moved = _brows_moved(still, _face(detector, still).points, lift, inner)
    driver = _dlib(dlib_face, moved).brow - _dlib(dlib_face, still).brow
    assert abs(driver) > 0.015 and np.sign(driver) == np.sign(lift)  # dlib sees the driver's
    for _ in range(12):
        out = animator.animate(moved, 512)
    now, before = _dlib(dlib_face, out), _dlib(dlib_face, rest)
    assert 0.75 < (now.brow - before.brow) / driver < 2.5
    seen = _brow_height(_face(detector, moved).points) - _brow_height(_face(detector, still).points)
    shown = _brow_height(_face(detector, out).points) - _brow_height(_face(detector, rest).points)
    assert 0.75 < shown / seen < 2.5
    if lift > 0:  # a raise does not drag the eyes open or shut
        assert 0.9 < now.eyes / before.eyes < 1.1


@pytest.mark.parametrize("lift", [-0.3, 0.4])
def test_brows_never_fold_into_the_eyes(lift: float) -> None:
    """However far the driver's brows go (a third of a face width down, or up), no
    face triangle flips, the lids, lid bands and irises stay, and the brow moves."""
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb("s0.jpg"), idle=0)
    assert isinstance(animator, WarpAnimator)
    ref = animator.portrait.points.astype(np.float64)
    unit = face_width(ref)
    expr = ref.copy()
    expr[BROWS, 1] -= lift * unit
    rig = brows.rig(ref)
    brows.apply(expr, ref, rig, 2.0)
    tris = animator.portrait.mesh.face

    def area(p: np.ndarray) -> np.ndarray:
        a, b, c = (p[tris[:, k], :2] for k in range(3))
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

    before, after = area(ref), area(expr)
    skin = np.abs(before) > 1e-3  # the eye and mouth fills are slivers at rest
    assert np.all(np.sign(after[skin]) == np.sign(before[skin]))
    eyes = np.concatenate([c for pair in EYES for c in pair] + list(LID_BANDS))
    assert np.abs(expr[eyes] - ref[eyes]).max() < 1e-9
    assert np.abs(expr[468:] - ref[468:]).max() < 1e-9
    rise = float(np.mean(ref[BROWS, 1] - expr[BROWS, 1])) / unit
    assert rise * np.sign(lift) > 0.02


# -- expression, read by an independent face model (dlib) ------------------------------


@pytest.fixture(scope="module")
def dlib_face() -> DlibFace:
    return DlibFace()


def _dlib(dlib_face: DlibFace, image: np.ndarray) -> Signals:
    found = dlib_face.measure(image)
    assert found is not None, "dlib finds no face"
    return found


def test_gaze_follows_the_driver_on_a_narrow_eyed_portrait(
    d0: list[np.ndarray], dlib_face: DlibFace
) -> None:
    """s1's eyes are narrow (dlib eye aspect 0.29): its irises still look where the driver does."""
    run = _play(_rgb("s1.jpg"), d0[: LOOK_LEFT + 1], {LOOK_RIGHT, LOOK_LEFT})
    driver = [_dlib(dlib_face, d0[i]).gaze_x for i in (NEUTRAL[-1], LOOK_RIGHT, LOOK_LEFT)]
    avatar = [
        _dlib(dlib_face, image).gaze_x
        for image in (run.rest, run.outputs[LOOK_RIGHT], run.outputs[LOOK_LEFT])
    ]
    assert driver[1] - driver[0] > 0.12 and driver[0] - driver[2] > 0.12  # the driver looks
    assert avatar[1] - avatar[0] > 0.5 * (driver[1] - driver[0])  # to the right
    assert avatar[0] - avatar[2] > 0.5 * (driver[0] - driver[2])  # and to the left


def _iris_between_corners(points: np.ndarray) -> float:
    """mediapipe's iris centre between the eye corners (eye widths), both eyes' mean."""
    return float(np.mean([gaze(points, eye)[0] for eye in (0, 1)]))


def test_the_iris_looks_as_far_as_the_driver(
    d0: list[np.ndarray], dlib_face: DlibFace, detector: FaceMesh
) -> None:
    """s0's eyes narrow at their corners more than the driver's, so an iris sent the
    driver's shift half hides under the lids: both readers then saw it look 0.52-0.65 as
    far (``gaze_gain`` 1). With the default gain both see at least 0.7 of the driver's
    look, either way."""
    run = _play(_rgb("s0.jpg"), d0[: LOOK_LEFT + 1], {LOOK_RIGHT, LOOK_LEFT})
    frames = (NEUTRAL[-1], LOOK_RIGHT, LOOK_LEFT)
    avatars = (run.rest, run.outputs[LOOK_RIGHT], run.outputs[LOOK_LEFT])
    readers: list[Callable[[np.ndarray], float]] = [
        lambda image: _dlib(dlib_face, image).gaze_x,
        lambda image: _iris_between_corners(_face(detector, image).points),
    ]
    for read in readers:
        driver = [read(d0[i]) for i in frames]
        avatar = [read(image) for image in avatars]
        assert avatar[1] - avatar[0] > 0.7 * (driver[1] - driver[0])  # to the right
        assert avatar[0] - avatar[2] > 0.7 * (driver[0] - driver[2])  # and to the left


def test_the_readers_gaze_over_both_eyes_is_only_read_while_both_are_open(
    d0: list[np.ndarray], dlib_face: DlibFace
) -> None:
    """Each pupil sits at its own place between its corners, so the mean over the open
    eyes jumps when one shuts; ``gaze_x_both`` is read only while both are open, and is
    then the same mean (bench/expression.py compares it over frames where both faces
    have both eyes open)."""
    open_ = _dlib(dlib_face, d0[LOOK_RIGHT])
    assert open_.gaze_x_both == pytest.approx(open_.gaze_x)
    assert open_.gaze_y_both == pytest.approx(open_.gaze_y)
    p = open_.points.copy()
    lid = p[[37, 38]]
    p[[37, 38]] = p[[41, 40]] - 0.05 * (p[[41, 40]] - lid)  # the right eye (image left) shut
    winked = signals(d0[LOOK_RIGHT], p)
    assert np.isnan(winked.gaze_x_both) and np.isnan(winked.gaze_y_both)
    assert np.isfinite(winked.gaze_x) and winked.gaze_x != pytest.approx(open_.gaze_x)


@pytest.mark.parametrize("portrait", ["astronaut", "s1.jpg"])
def test_at_rest_the_eyes_are_the_portraits_own(d0: list[np.ndarray], portrait: str) -> None:
    """Driven by a still, neutral face, the eyes are the reference's own pixels, not a
    painted eye white and iris laid over them (eyeball.py).

    Measured, mean grey-level difference to the reference in each eye's box: astronaut
    2.8 / 5.0, s1 2.1 / 5.6 (the rest of the face moves a little with the driver's
    landmark noise); with the eye white painted in a flat colour up to the lash line
    10.9 / 12.0 and 6.3 / 10.0.
    """
    reference = default_reference() if portrait == "astronaut" else _rgb(portrait)
    animator = create_animator("warp", clock=FakeClock(), reference=reference, idle=0)
    assert isinstance(animator, WarpAnimator)
    for i in (*NEUTRAL, *[NEUTRAL[-1]] * 6):
        out = animator.animate(d0[i], 512)
    image = animator.portrait.at(512, 2).image.astype(np.float32)
    for eye in (0, 1):
        x0, y0, x1, y1 = eye_box(animator.portrait.points, eye)
        diff = np.abs(out[y0:y1, x0:x1].astype(np.float32) - image[y0:y1, x0:x1]).mean()
        assert diff < 7.5, (eye, diff)


def test_eyes_widen_beyond_the_portraits_own(d0: list[np.ndarray], dlib_face: DlibFace) -> None:
    """A driver opening its eyes wider than its neutral raises the avatar's upper lids."""
    frames = [d0[NARROW]] * 3 + [d0[0]] * 8  # the neutral is the narrow-eyed frame
    run = _play(_rgb("s1.jpg"), frames, {len(frames) - 1})
    driver = _dlib(dlib_face, d0[0]).eyes / _dlib(dlib_face, d0[NARROW]).eyes
    avatar = _dlib(dlib_face, run.outputs[len(frames) - 1]).eyes / _dlib(dlib_face, run.rest).eyes
    assert driver > 1.3
    assert avatar > 1.12


SQUINT = 90  # d19: the driver squints (dlib eye aspect 0.52 of frame 2's; mediapipe 0.74)


def test_a_squint_narrows_a_narrow_eyed_portrait_as_far(dlib_face: DlibFace) -> None:
    """s1's narrow eyes narrow with the driver's squint, read by dlib, not half as far.

    mediapipe reads the driver's squint short of dlib and the warped lid shows
    only part of its motion, so the avatar's narrowing is scaled (``lid_gain``);
    without it s1 stays at 0.81 of its rest opening here.
    """
    d19 = _frames("d19.mp4", SQUINT)
    run = _play(_rgb("s1.jpg"), list(d19[: NEUTRAL[-1] + 1]) + [d19[SQUINT]] * 8, {NEUTRAL[-1] + 8})
    driver = _dlib(dlib_face, d19[SQUINT]).eyes / _dlib(dlib_face, d19[NEUTRAL[-1]]).eyes
    avatar = _dlib(dlib_face, run.outputs[NEUTRAL[-1] + 8]).eyes / _dlib(dlib_face, run.rest).eyes
    assert driver < 0.6  # the driver squints
    assert 0.3 < avatar < 0.7  # the avatar narrows most of the way, and is not shut


def _iris_gaze(animator: WarpAnimator) -> np.ndarray:
    """The avatar's irises between their eye corners (eye widths), both eyes averaged."""
    assert animator._target is not None
    target = animator._target[:478]
    return (gaze(target, 0) + gaze(target, 1)) / 2


def _held(
    animator: WarpAnimator, frame: np.ndarray, points: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = (0.0, 0.0, float(frame.shape[1]), float(frame.shape[0]))
    monkeypatch.setattr(animator, "_landmarks", lambda driver: FaceLandmarks(points, box, 1.0))
    animator.animate(frame, 128)


def _s0_at_rest(
    frame: np.ndarray, points: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> WarpAnimator:
    """The s0 avatar after the neutral frames, each driven by ``points`` on ``frame``."""
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb("s0.jpg"), idle=0)
    assert isinstance(animator, WarpAnimator)
    for _ in NEUTRAL:
        _held(animator, frame, points, monkeypatch)
    return animator


def test_iris_ignores_landmark_tremble_but_follows_a_look(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Irises that wobble by landmark noise (0.012 eye widths) leave the avatar's still;
    a look aside (0.15) moves them nearly as far."""
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    rest = _iris_gaze(animator)

    def looking(along: float) -> np.ndarray:
        moved = real.copy()
        for eye, centre in enumerate(IRIS_CENTRES):
            _, direction, _, width = _eye_frame(real, eye)
            moved[centre : centre + 5, :2] += along * width * direction
        return moved

    wobble = []
    for i in range(20):
        _held(animator, d0[0], looking(0.012 if i % 2 else -0.012), monkeypatch)
        wobble.append(_iris_gaze(animator)[0] - rest[0])
    assert np.ptp(wobble) < 0.003
    for _ in range(4):
        _held(animator, d0[0], looking(0.15), monkeypatch)
    assert _iris_gaze(animator)[0] - rest[0] > 0.12


def test_a_half_shut_eye_still_looks_aside(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the driver's lids at half their gap (a driver reading, frowning), its
    sideways look still moves the avatar's irises: mediapipe's iris reads sideways
    gaze at r 0.77 against dlib's pupil even then (issue 18, d3)."""
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    rest = _iris_gaze(animator)
    looking = _lids_lowered(real, 0.5)
    for eye, centre in enumerate(IRIS_CENTRES):
        _, along, _, width = _eye_frame(real, eye)
        looking[centre : centre + 5, :2] += 0.15 * width * along
    for _ in range(4):
        _held(animator, d0[0], looking, monkeypatch)
    assert _iris_gaze(animator)[0] - rest[0] > 0.1


def test_a_wink_leaves_the_other_eye_looking(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver who winks while looking aside (d3 winks with either eye): the shut
    eye's iris is a guess, the open one's is not, so the avatar's irises follow the
    open eye instead of holding the last gaze until both are open again, read against
    its own rest place (each iris sits at its own place between its corners: against
    both eyes' mean rest, a wink looking ahead moved the irises 0.020 eye widths; here
    0.000)."""
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    rest = _iris_gaze(animator)
    for winking in (0, 1):
        looking = _lids_lowered(real, 0.9)
        looking[EYES[1 - winking][0]] = real[EYES[1 - winking][0]]  # the other eye open
        other = IRIS_CENTRES[1 - winking]
        looking[other : other + 5] = real[other : other + 5]
        for _ in range(4):  # a wink looking ahead: the open eye's own rest, not both eyes'
            _held(animator, d0[0], looking, monkeypatch)
        assert abs(_iris_gaze(animator)[0] - rest[0]) < 0.005, f"eye {winking} winking ahead"
        for eye, centre in enumerate(IRIS_CENTRES):
            _, along, _, width = _eye_frame(real, eye)
            looking[centre : centre + 5, :2] += 0.15 * width * along
        for _ in range(4):
            _held(animator, d0[0], looking, monkeypatch)
        assert _iris_gaze(animator)[0] - rest[0] > 0.1, f"eye {winking} winking"
        for _ in range(8):  # back to rest between the winks
            _held(animator, d0[0], real, monkeypatch)
        assert abs(_iris_gaze(animator)[0] - rest[0]) < 0.03


def _lids_lowered(points: np.ndarray, share: float) -> np.ndarray:
    """``points`` with each upper lid lowered by ``share`` of its gap, and the iris
    dropped by half of that, as mediapipe reads it (its iris rides on the lids)."""
    out = points.copy()
    for eye, (upper, lower) in enumerate(EYES):
        lost = share * (out[upper[1:-1]] - out[lower[1:-1]])
        down = _eye_frame(points, eye)[2]
        drop = 0.5 * float(np.mean(-lost[:, :2] @ down))
        out[upper[1:-1]] -= lost
        centre = IRIS_CENTRES[eye]
        out[centre : centre + 5, :2] += drop * down
    return out


def _iris_below_lid(points: np.ndarray, eye: int) -> float:
    """How far (eye widths) eye ``eye``'s iris centre sits below its upper lid."""
    a, along, down, width = _eye_frame(points, eye)
    rel = (points[IRIS_CENTRES[eye], :2] - a) / width
    return float(rel @ down) - _lid_at(points, EYES[eye][0], eye, float(rel @ along))


def test_iris_stays_put_in_a_squint(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mediapipe's iris drops by about half of what the upper lid comes down; in a
    squint that leaves the lid above the iris's centre the avatar's iris must not
    sink with it (it would read as a narrower eye; 0.018 eye widths if it did)."""
    real = _face(detector, d0[0]).points
    animator = create_animator(
        "warp", clock=FakeClock(), reference=default_reference(), idle=0, lid_gain=1.0
    )
    assert isinstance(animator, WarpAnimator)
    for _ in NEUTRAL:
        _held(animator, d0[0], real, monkeypatch)
    rest = _iris_gaze(animator)
    for _ in range(6):
        _held(animator, d0[0], _lids_lowered(real, 0.3), monkeypatch)
    assert animator._target is not None
    target = animator._target[:478]
    assert np.mean(eye_openings(target)) < 0.8 * np.mean(eye_openings(animator.portrait.points))
    assert min(_iris_below_lid(target, eye) for eye in (0, 1)) > 0.02  # the lid stays above it
    assert abs(_iris_gaze(animator)[1] - rest[1]) < 0.006


def test_a_lid_lowered_past_the_iris_takes_it_down(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver looking down lowers the upper lids far: the avatar's slit shows its
    iris, not the white under it (eyes rolled up, seen on a driver reading, issue 18).

    Measured on s0: white between the iris and the lower lid 0.001 / 0.006 eye widths
    (right / left eye), share of the slit's pixels brighter than grey 150 0.15 / 0.21;
    with the iris left at rest height 0.08 / 0.12 and 0.25 / 0.28.
    """
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    for _ in range(6):
        _held(animator, d0[0], _lids_lowered(real, 0.35), monkeypatch)
    out = animator.animate(d0[0], 512)
    assert animator._target is not None
    target = animator._target[:478]
    assert np.mean(eye_openings(target)) < 0.5 * np.mean(eye_openings(animator.portrait.points))
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    points = target[:, :2] * (512 / BASE)
    for eye, (upper, lower) in enumerate(EYES):
        a, along, down, width = _eye_frame(target, eye)
        rel = (target[IRIS_CENTRES[eye], :2] - a) / width
        radius = iris_radius(target, IRIS_CENTRES[eye], width) / width
        white_under = _lid_at(target, lower, eye, float(rel @ along)) - float(rel @ down) - radius
        assert white_under < 0.02, eye
        slit = np.zeros(grey.shape, np.uint8)
        cv2.fillPoly(slit, [np.round(points[loop(upper, lower)]).astype(np.int32)], (255,))
        assert np.mean(grey[slit > 0] > 150) < 0.235, eye


def _mouth_shares(animator: WarpAnimator, out: np.ndarray) -> tuple[float, float]:
    """Share of the avatar's inner-lip opening that is bright (teeth) and dark (inside)."""
    assert animator._target is not None
    points = animator._target[:478, :2] * (512 / BASE)
    poly = np.concatenate([points[LIP_UPPER], points[LIP_LOWER][-2:0:-1]])
    mask = np.zeros(out.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (255,))
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0]
    assert grey.size > 100, "the mouth is not open"
    return float(np.mean(grey > 120)), float(np.mean(grey < 60))


GRIN = (
    26  # d0: a broad grin, teeth together (mediapipe: lips 0.15 face widths apart, chin 0.02 down)
)


def test_a_grin_shows_teeth_from_lip_to_lip(d0: list[np.ndarray]) -> None:
    """Lips parted with the jaw shut show teeth between them, upper and lower, not a
    dark hole under a strip of upper teeth (issue 18: dlib's identity on d0 followed
    the mouth's opening at r 0.87 on s1).

    Measured on s0: bright 0.73, dark 0.10 of the opening; with upper teeth only
    (a share of the opening) 0.58 and 0.28.
    """
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb("s0.jpg"), idle=0)
    assert isinstance(animator, WarpAnimator)
    for frame in d0[: GRIN + 1]:
        out = animator.animate(frame, 512)
    bright, dark = _mouth_shares(animator, out)
    assert bright > 0.66 and dark < 0.17


def _jaw_dropped(points: np.ndarray, drop: float) -> np.ndarray:
    """``points`` with the jaw dropped by ``drop`` face widths: the chin, the lower
    lip and all below them, easing in from the lower lip's inner edge."""
    unit = face_width(points)
    dropped = points.copy()
    below = points[:, 1] > points[14, 1] + 0.02 * unit
    below[LIP_LOWER[1:-1]] = True
    share = np.clip((points[below, 1] - points[14, 1]) / (0.3 * unit) + 0.6, 0.0, 1.0)
    dropped[below, 1] += drop * unit * share
    return dropped


def test_an_open_jaw_shows_the_dark_inside(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jaw dropped by 0.15 face widths (chin, lower lip and all below them) opens a
    dark mouth under the upper teeth: the teeth part with the jaw.

    Measured on s0: bright 0.57, dark 0.23 of the opening; with the jaw's drop
    ignored (teeth from lip to lip, as in a grin) 0.80 and 0.12.
    """
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    dropped = _jaw_dropped(real, 0.15)
    for _ in range(6):
        _held(animator, d0[0], dropped, monkeypatch)
    bright, dark = _mouth_shares(animator, animator.animate(d0[0], 512))
    assert dark > 0.18 and bright < 0.7


def test_the_portraits_own_teeth_hang_from_the_upper_lip_as_it_arches(
    d0: list[np.ndarray], detector: FaceMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mouth opening wide lifts the upper lip's middle (d11, a child's "oh"): the
    astronaut's own teeth must follow the lip's curve down from it, not keep the
    reference's and leave a dark band between the lip and the teeth.

    Measured (share of the top quarter of the opening, middle half of its width, darker
    than grey 70), the lip's middle raised 0.06 face widths: 0.00; with the teeth hung
    by one similarity (before) 0.34.
    """
    real = _face(detector, d0[0]).points
    animator = create_animator("warp", clock=FakeClock(), reference=default_reference(), idle=0)
    assert isinstance(animator, WarpAnimator)
    for _ in NEUTRAL:
        _held(animator, d0[0], real, monkeypatch)
    unit = face_width(real)
    opened = real.copy()
    below = real[:, 1] > real[14, 1] + 0.02 * unit
    below[LIP_LOWER[1:-1]] = True
    opened[below, 1] += (
        0.12 * unit * np.clip((real[below, 1] - real[14, 1]) / (0.3 * unit) + 0.6, 0, 1)
    )
    # The upper lip's middle rises (inner and outer edge), its corners stay.
    lip = np.array([0, 11, 12, 13, 37, 39, 40, 185, 267, 269, 270, 409, 72, 38, 82, 81, 80, 191,
                    302, 268, 312, 311, 310, 415], dtype=np.int32)  # fmt: skip
    centre, half = real[13, 0], 0.5 * abs(real[291, 0] - real[61, 0])
    rise = np.clip(1.0 - np.abs(real[lip, 0] - centre) / half, 0.0, 1.0)
    opened[lip, 1] -= 0.06 * unit * rise
    for _ in range(6):
        _held(animator, d0[0], opened, monkeypatch)
    out = animator.animate(d0[0], 512)
    assert animator._target is not None
    target = animator._target[:478, :2]
    up, low = target[LIP_UPPER], target[LIP_LOWER]
    middle = slice(len(up) // 4, len(up) - len(up) // 4)
    band = np.concatenate([up[middle], (up + 0.25 * (low - up))[middle][::-1]])
    mask = np.zeros((512, 512), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(band).astype(np.int32)], (255,))
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[mask > 0]
    assert grey.size > 50
    assert float((grey < 70).mean()) < 0.1


def _smiling(points: np.ndarray, wider: float, lift: float) -> np.ndarray:
    """``points`` with the mouth ``wider`` (share of its width) and its corners raised by
    ``lift`` mouth widths, the lips and the skin next to them moving with the corners."""
    out = points.copy()
    left, right = points[61, :2], points[291, :2]
    centre, half = (left + right) / 2, float(np.linalg.norm(right - left)) / 2
    near = np.linalg.norm(points[:, :2] - centre, axis=1) < 1.3 * half
    u = (points[near, 0] - centre[0]) / half  # -1 … 1 corner to corner
    out[near, 0] += wider * half * u
    out[near, 1] -= lift * 2 * half * u**2
    return out


def _mp_mouth_width(points: np.ndarray) -> float:
    """mediapipe's mouth-corner distance over its eye-corner distance."""
    return float(np.linalg.norm(points[291, :2] - points[61, :2]) / face_width(points))


def test_mouth_widens_and_corners_rise_with_a_smile(
    d0: list[np.ndarray], detector: FaceMesh, dlib_face: DlibFace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver's smile (mouth 15 % wider, corners up) shows on the avatar as dlib reads it."""
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    rest_image = animator.animate(d0[0], 512)
    rest = _dlib(dlib_face, rest_image)
    smile = _smiling(real, 0.15, 0.06)
    unit = face_width(real)
    width = float(np.linalg.norm(real[291, :2] - real[61, :2]))
    driver_wider = (float(np.linalg.norm(smile[291, :2] - smile[61, :2])) - width) / unit
    driver_lift = 0.06 * width / unit
    for _ in range(8):
        _held(animator, d0[0], smile, monkeypatch)
    out = animator.animate(d0[0], 512)
    now = _dlib(dlib_face, out)
    # Measured by dlib: width 0.46, corners 0.75 of the driver's (a 0.3 expression
    # gain fails the corners); mediapipe reads the width at 0.89. dlib fits its 68
    # points as one shape: with the portrait's own eyes in place of painted ones
    # (eyeball.py) its width fell from 0.73 to 0.46 while every mouth pixel stayed
    # the same, so mediapipe, re-reading the image, judges the width too.
    assert 0.4 * driver_wider < now.width - rest.width < 2.0 * driver_wider
    assert 0.4 * driver_lift < now.corners - rest.corners < 2.5 * driver_lift
    shown = _mp_mouth_width(_face(detector, out).points) - _mp_mouth_width(
        _face(detector, rest_image).points
    )
    assert 0.6 * driver_wider < shown < 2.0 * driver_wider


# -- stability ---------------------------------------------------------------------------


def test_lost_face_holds_then_eases_to_rest(s0_run: Run, detector: FaceMesh) -> None:
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb("s0.jpg"), idle=0)
    for frame in s0_run.driver[: MOUTH + 1]:
        moving = animator.animate(frame, 256)
    assert _aperture(_face(detector, moving).points) > 0.08  # the small size moves too
    at_rest = animator.animate(data.coffee(), 256)  # the face is gone
    assert np.abs(at_rest.astype(np.int16) - moving).mean() < 1.0  # held, not dropped
    outputs = [animator.animate(data.coffee(), 256) for _ in range(3 * int(FPS))]
    assert all(o.mean() > 40 for o in outputs)  # never black
    steps = [np.abs(a.astype(np.int16) - b).mean() for a, b in itertools.pairwise(outputs)]
    assert max(steps) < 2.0  # eased, not a jump
    rest = animator.portrait.at(256, 2).image.astype(np.int16)
    first, last = np.abs(outputs[0] - rest).mean(), np.abs(outputs[-1] - rest).mean()
    assert last < 0.1 * first  # back at rest after 3 s


def test_face_found_again_fades_back_in(s0_run: Run) -> None:
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb("s0.jpg"), idle=0)
    for frame in s0_run.driver[:3]:
        animator.animate(frame, 256)
    for _ in range(int(FPS)):
        rest = animator.animate(data.coffee(), 256)
    outputs = [animator.animate(s0_run.driver[MOUTH], 256) for _ in range(10)]
    steps = [np.abs(a.astype(np.int16) - b).mean() for a, b in itertools.pairwise([rest, *outputs])]
    assert max(steps) < 0.6 * sum(steps)  # spread over frames, not one jump
    assert np.abs(outputs[-1].astype(np.int16) - rest).mean() > 1.0  # and it got there


@pytest.mark.parametrize("reset", [True, False])
def test_reset_takes_a_new_neutral(s0_run: Run, detector: FaceMesh, reset: bool) -> None:
    """After ``reset`` an open mouth held still is the new neutral: the avatar rests.
    The control run without ``reset`` keeps the old neutral: the mouth stays open."""
    animator = create_animator("warp", clock=FakeClock(), reference=_rgb("s0.jpg"), idle=0)
    for frame in s0_run.driver[: MOUTH + 1]:
        animator.animate(frame, 256)
    if reset:
        animator.reset()
    mouth_open = s0_run.driver[MOUTH]
    for _ in range(3 * int(FPS)):
        out = animator.animate(mouth_open, 256)
    rest = animator.portrait.at(256, 2).image
    at_rest, now = _aperture(_face(detector, rest).points), _aperture(_face(detector, out).points)
    off = np.abs(out.astype(np.int16) - rest).mean()  # an open mouth at 256: ~1.4
    if reset:
        assert now < at_rest + 0.02 and off < 0.5
    else:
        assert now > at_rest + 0.06 and off > 1.0


def test_idle_motion_without_a_driver(detector: FaceMesh) -> None:
    """No face to follow: the avatar sways and blinks a little, never a still picture."""
    still = create_animator("warp", clock=FakeClock(), idle=0)
    alive = create_animator("warp", clock=FakeClock())
    empty = data.coffee()
    rest = still.animate(empty, 256)
    assert np.array_equal(rest, still.animate(empty, 256))  # idle=0: the portrait itself
    outputs = [alive.animate(empty, 256) for _ in range(int(4 * FPS))]
    steps = [np.abs(a.astype(np.int16) - b).mean() for a, b in itertools.pairwise(outputs)]
    assert min(steps) > 0.0  # every frame differs from the one before…
    off = [np.abs(o.astype(np.int16) - rest).mean() for o in outputs]
    assert max(off) < 6.0  # …but stays close to the portrait
    # A blink every four seconds, the first after two (frames 49-53 at 25 fps).
    rest_eyes = np.mean(eye_openings(_face(detector, rest).points))
    eyes = [np.mean(eye_openings(_face(detector, outputs[i]).points)) for i in range(48, 55)]
    assert min(eyes) < 0.6 * rest_eyes
    assert np.mean(eye_openings(_face(detector, outputs[25]).points)) > 0.8 * rest_eyes


def test_one_euro_smooths_jitter_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    filt = OneEuroFilter(OneEuroConfig())
    still = np.zeros((10, 3))
    noisy = [filt(still + rng.normal(0, 0.01, still.shape), 1 / FPS) for _ in range(100)]
    assert np.std(noisy[20:]) < 0.5 * 0.01  # jitter removed
    filt.reset()
    assert np.array_equal(filt(np.ones((2, 3)), 1 / FPS), np.ones((2, 3)))
    filt.reset()
    # A fast move (a mouth opening: 0.3 face widths in 0.12 s) lags little.
    path = np.concatenate([np.zeros(5), np.linspace(0, 0.3, 4), np.full(6, 0.3)])
    out = [filt(np.full((1, 3), x), 1 / FPS)[0, 0] for x in path]
    assert out[9] > 0.8 * 0.3  # one frame after the move ends


def test_mesh_warp_is_exact_for_a_known_map() -> None:
    """A mesh moved by one affine map warps the image by exactly that map."""
    rng = np.random.default_rng(3)
    source = np.concatenate(
        [rng.uniform(40, 216, (40, 2)), [[-50, -50], [306, -50], [306, 306], [-50, 306]]]
    ).astype(np.float32)
    tris = Delaunay(source).simplices.astype(np.int32)
    moving = np.ones(len(source), dtype=bool)
    moving[-4:] = False
    # Identity: the image comes back unchanged.
    image = data.astronaut()[::2, ::2].copy()
    same = warp(image, backward_map(WarpGrid(256, 2), source, source, tris, moving))
    assert np.abs(same.astype(np.int16) - image).max() <= 1
    # A shift of the inner points by (3, -2): inside the hull, pixels move by it.
    target = source.copy()
    target[moving] += np.array([3.0, -2.0], dtype=np.float32)
    aff = triangle_affines(target, source, tris)
    inner = np.nonzero(moving[tris].all(axis=1))[0]
    assert np.allclose(aff[inner], [[1, 0, -3, 0, 1, 2]], atol=1e-4)
    moved = warp(image, backward_map(WarpGrid(256, 1), target, source, tris, moving))
    centre = (slice(110, 140), slice(110, 140))
    shifted = np.roll(np.roll(image, 3, axis=1), -2, axis=0)
    assert np.abs(moved[centre].astype(np.int16) - shifted[centre]).max() <= 1


@pytest.mark.parametrize(("yaw", "side"), [(-20.0, 1.0), (20.0, -1.0)])
def test_a_head_leaning_across_the_frame_keeps_its_neck(
    d0: list[np.ndarray],
    detector: FaceMesh,
    yaw: float,
    side: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver leaning 0.4 face widths sideways and down, turned 20° and with the
    jaw dropped (d12, a real driver, does all of it at once): the rings round the
    face (hair, neck) must neither fold nor stretch. Measured: back triangles
    folded 0 / 0 px², stretched 0 / 0; with ring B held still and the rings not
    kept apart (before) folded 510 / 867, stretched 1886 / 1926; kept apart but
    ring B still: folded 118 / 50, stretched 1886 / 1926; ring B following but
    the rings not kept apart: folded 121 / 158."""
    real = _face(detector, d0[0]).points
    animator = _s0_at_rest(d0[0], real, monkeypatch)
    unit = face_width(real)
    moved = _head_turned(_jaw_dropped(real, 0.15), yaw)
    moved[:, 0] += 0.4 * unit * side
    moved[:, 1] += 0.4 * unit
    for _ in range(12):
        _held(animator, d0[0], moved, monkeypatch)
    out = animator.animate(d0[0], 512)
    target = animator.target_mesh
    assert target is not None
    mesh = animator.portrait.mesh
    fold = distortion(mesh.vertices, target, mesh.back)
    assert fold.folded < 50 and fold.stretched < 200, fold
    # …while the face itself went with the lean.
    x0, _, x1, _ = animator.portrait.box
    fx0, _, fx1, _ = _face(detector, out).box
    assert side * ((fx0 + fx1) - (x0 + x1)) / 2 > 0.2 * (x1 - x0)
