"""``WarpAnimator``: the embedded default face backend (CPU, no downloaded weights).

Per frame: landmarks of the driver (mediapipe, tracking mode) → One-Euro
smoothing → motion relative to the driver's neutral pose, carried onto the
reference (pose.py) → eyes and lips tidied (features.py) → mesh warp of the
reference (meshwarp.py) → eye and mouth layers painted over it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from mirage.models.avatar.reference import default_reference
from mirage.models.avatar.warp import brows, features, pose, surround
from mirage.models.avatar.warp.meshwarp import backward_map, warp
from mirage.models.avatar.warp.portrait import BASE, Portrait, prepare
from mirage.models.avatar.warp.smoothing import OneEuroConfig, OneEuroFilter
from mirage.models.avatar.warp.topology import RIGID
from mirage.models.base import BadInput, FaceAnimator, NoFaceError
from mirage.models.face.mesh import NUM_POINTS, FaceLandmarks, FaceMesh


@dataclass(frozen=True)
class WarpConfig:
    """Options of the ``warp`` backend (all may be passed to ``create_animator``)."""

    grid: int = 2  # output pixels per cell of the warp map (1 = exact, 4 = fastest)
    landmark_side: int = 512  # the driver is shrunk to this longer side for landmarks
    neutral_frames: int = 3  # confident frames averaged into the driver's neutral pose
    min_score: float = 0.8  # share of the driver's landmarks that must be in frame
    hold_s: float = 0.4  # a lost face keeps its last pose this long …
    ease_s: float = 0.6  # … then eases back to neutral with this time constant
    ramp_s: float = 0.25  # a face found again fades back in over this long
    face_scale: float = 3.2  # reference crop side, in face sizes at most
    eye_closed_at: float = 0.25  # driver lid gap (of its neutral) that counts as shut
    # Avatar iris shift per driver iris shift, both in eye widths. Above 1 because a
    # portrait's eye is narrower at its corners than the driver's: at 1 the iris
    # went where it was sent but half hid under the lids, and two readers (dlib's
    # pupil, mediapipe's iris) saw it look 0.73 / 0.75 as far as the driver
    # (median of 30 pairs; 0.85 / 0.94 at 1.4 with features.IRIS_VISIBLE, issue 18
    # part 13).
    gaze_gain: float = 1.4
    lid_gain: float = 1.8  # avatar lid narrowing per driver narrowing, of each neutral gap
    brow_gain: float = 2.0  # avatar brow motion per driver brow motion (0: the raw delta only)
    max_depth: float = 0.8  # face widths behind the nose tip the head turns with (pose.flattened)
    idle: float = 1.0  # strength of the idle sway and blinks shown while no face drives
    smoothing: OneEuroConfig = field(default_factory=OneEuroConfig)  # landmarks, in face widths
    lid_smoothing: OneEuroConfig = field(  # lid gaps, as shares of the neutral gap
        default_factory=lambda: OneEuroConfig(min_cutoff=2.0, beta=1.0)
    )
    gaze_smoothing: OneEuroConfig = field(  # gaze, in eye widths: saccades are one frame
        default_factory=lambda: OneEuroConfig(min_cutoff=0.5, beta=10.0, d_cutoff=5.0)
    )
    limits: pose.MotionLimits = field(default_factory=pose.MotionLimits)

    def __post_init__(self) -> None:
        if self.grid not in (1, 2, 4, 8):
            raise BadInput(f"grid must be 1, 2, 4 or 8, got {self.grid}")
        if self.neutral_frames < 1:
            raise BadInput(f"neutral_frames must be >= 1, got {self.neutral_frames}")
        if self.landmark_side < 64:
            raise BadInput(f"landmark_side must be >= 64, got {self.landmark_side}")
        if not 0.0 <= self.gaze_gain <= 3.0:
            raise BadInput(f"gaze_gain must be in [0, 3], got {self.gaze_gain}")
        if not 0.5 <= self.lid_gain <= 2.5:  # past 1 / (1 - knee) a squint would shut it
            raise BadInput(f"lid_gain must be in [0.5, 2.5], got {self.lid_gain}")
        if not 0.0 <= self.brow_gain <= 4.0:
            raise BadInput(f"brow_gain must be in [0, 4], got {self.brow_gain}")
        if not 0.2 <= self.max_depth <= 3.0:
            raise BadInput(f"max_depth must be in [0.2, 3], got {self.max_depth}")
        if not 0.0 <= self.idle <= 2.0:
            raise BadInput(f"idle must be in [0, 2], got {self.idle}")


def _check_image(image: object, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise BadInput(
            f"{what} must be an RGB image (H, W, 3), got {getattr(image, 'shape', image)}"
        )
    if image.dtype != np.uint8:
        raise BadInput(f"{what} must be uint8, got {image.dtype}")
    if min(image.shape[:2]) < 32:
        raise BadInput(f"{what} is too small: {image.shape[1]}x{image.shape[0]}")
    return image


#: How far (eye widths) mediapipe's iris centre moves down per unit of lost lid gap
#: (gap over eye width): the slope of one on the other over d0 (0.47) and d19 (0.52),
#: where the driver hardly looks up or down.
LID_IRIS_SLOPE = 0.5

#: The driver's eyes must be this open (of their neutral gap) for its gaze to be read:
#: sideways, mediapipe's iris agrees with dlib's pupil at r 0.77 even with the eye at
#: half its gap (d3, a driver reading); up and down, only a well-open eye is trusted.
GAZE_ALONG_OPEN = 0.35
GAZE_ACROSS_OPEN = 0.6

#: A reference mouth this open (gap over width) shows its own teeth and tongue.
TEETH_OPENING = 0.08


def _lid_curve(ratio: float, closed_at: float, gain: float = 1.0, knee: float = 0.65) -> float:
    """Driver lid gap (of its neutral) → avatar lid gap (of the reference's).

    Wider than the neutral: as the driver, up to 1.5 (past the reference's own
    opening the render shows little more, and more reads as less). Between
    ``knee`` and the neutral, ``gain`` times the driver's narrowing: mediapipe
    reads a driver's squint at about 0.6 of what dlib does, and a warped lid
    shows about 0.6 of its motion (issue 18). Below ``knee``, steeper, reaching
    0 at ``closed_at``: the landmark model rarely reports a blink as fully shut,
    and a half-shut avatar eye reads as a squint rather than a blink.
    """
    at_knee = 1.0 + gain * (knee - 1.0)
    if ratio >= 1.0:
        return float(min(ratio, 1.5))
    if ratio >= knee:
        return float(1.0 + gain * (ratio - 1.0))
    return float(max(at_knee * (ratio - closed_at) / (knee - closed_at), 0.0))


def _gazes(points: np.ndarray) -> np.ndarray:
    """Each iris's place between its eye corners, (2 eyes, along / down) in eye widths."""
    return np.array([features.gaze(points, 0), features.gaze(points, 1)])


#: Gaze shifts (eye widths, along / across) this small are mostly landmark noise: a
#: still driver's irises wander by about 0.01 (d19), a look aside moves them 0.15 (d0).
GAZE_NOISE = np.array([0.03, 0.03])


def _past_noise(shift: np.ndarray) -> np.ndarray:
    """``shift`` with what is within ``GAZE_NOISE`` of rest shrunk away, smoothly:
    an iris that trembles with every landmark wobble reads as a lid moving."""
    return shift * shift**2 / (shift**2 + GAZE_NOISE**2)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """A rotation from angles in degrees (image frame: x right, y down, z away)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _mesh_for(
    portrait: Portrait, motion: pose.Motion, expression: np.ndarray, max_depth: float
) -> np.ndarray:
    """The portrait's full mesh (V, 3) with ``expression`` landmarks moved by ``motion``;
    the rings around the face follow it as surround.py says."""
    ref = portrait.points.astype(np.float64)
    mesh = portrait.mesh
    target = np.empty(mesh.vertices.shape, dtype=np.float64)
    target[:NUM_POINTS] = pose.place(expression, motion, ref, max_depth)
    target[NUM_POINTS:] = surround.place_rings(mesh, target[:NUM_POINTS], motion, ref, max_depth)
    return target.astype(np.float32)


#: mediapipe's inner-lip centres and chin.
LIP_TOP, LIP_BOTTOM, CHIN = 13, 14, 152
#: How far the lower teeth drop per unit of mediapipe's chin drop. They sit nearer
#: the jaw's hinge than the chin, but the landmark chin lags the jaw: on a child's
#: wide-open mouth (d11) the lower lip dropped 1.5 times as far as the chin, and at
#: 0.8 a band of lower teeth hid the tongue.
JAW_TEETH = 1.0


def _bite(reference: np.ndarray, target: np.ndarray, k: float, max_depth: float) -> features.Bite:
    """Where the avatar's teeth meet (output pixels, ``k`` per BASE pixel): the
    reference's closed-lip line carried with the skull (a 3D similarity fitted on
    the rigid landmarks, reference → ``target``, so a nod is not read as a jaw
    moving), and the chin's drop from where the skull would carry it."""
    picked = np.concatenate([reference[RIGID], reference[[LIP_TOP, LIP_BOTTOM, CHIN]]])
    flat = pose.flattened(picked, reference, max_depth)  # as the mesh turns with it
    rigid, (top, bottom, chin) = flat[: len(RIGID)], flat[len(RIGID) :]
    skull = pose.fit_similarity(rigid, target[RIGID])
    edge, chin = skull.apply(np.stack([(top + bottom) / 2, chin]))[:, :2]
    down = skull.rotation[:2, 1] / max(float(np.linalg.norm(skull.rotation[:2, 1])), 1e-6)
    jaw = float((target[CHIN, :2] - chin) @ down) * JAW_TEETH
    return features.Bite(edge * k, max(jaw, 0.0) * k)


class WarpAnimator(FaceAnimator):
    """Moves a reference portrait like the driver's face, by a landmark-driven mesh warp.

    Not thread-safe: one instance per session, used from one worker thread.
    ``clock`` (seconds) times the smoothing and easing; tests pass a fake one.
    """

    def __init__(
        self,
        models_dir: str | None = None,
        reference: np.ndarray | None = None,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        known = {f.name for f in fields(WarpConfig)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BadInput(f"unknown warp option(s) {unknown}; known: {sorted(known)}")
        self.config = WarpConfig(**options)
        self._clock = clock
        self._tracker = FaceMesh(static=False)
        self._filter = OneEuroFilter(self.config.smoothing)
        self._eye_filter = OneEuroFilter(self.config.lid_smoothing)
        self._gaze_filter = OneEuroFilter(self.config.gaze_smoothing)
        self._portrait: Portrait | None = None
        self._brows: brows.BrowRig | None = None
        self._neutral_sum: np.ndarray | None = None
        self._neutral_count = 0
        self._neutral: np.ndarray | None = None
        self._neutral_eyes = (1.0, 1.0)
        self._neutral_gaze = np.zeros((2, 2))
        self._gaze = np.zeros(2)  # the driver's gaze shift last seen with open eyes
        self._to_reference: pose.Similarity | None = None
        self._target: np.ndarray | None = None  # (V, 3) mesh at full motion, BASE px
        self._presence = 0.0  # 0 = reference at rest … 1 = full motion
        self._lost_s = 0.0
        self._last_t: float | None = None
        self._age_s = 0.0  # seconds of frames seen, for the idle motion
        self.last_motion: pose.Motion | None = None  # for diagnostics and tests
        self._stage_seconds: dict[str, float] = {}
        if reference is not None:
            self.set_reference(reference)

    # -- reference ------------------------------------------------------------------

    def set_reference(self, image: np.ndarray) -> None:
        """Prepare ``image`` (RGB uint8) as the portrait; ``NoFaceError`` if it has none."""
        image = _check_image(image, "reference image")
        detector = FaceMesh(static=True, max_faces=4)
        try:
            face = detector.detect(image)
        finally:
            detector.close()
        if face is None or pose.face_width(face.points) < 12:
            raise NoFaceError("no face found in the reference image; use a clear, frontal portrait")
        self._portrait = prepare(image, face, self.config.face_scale)
        self._brows = brows.rig(self._portrait.points)
        self._target = None
        self._presence = 0.0
        self._fit_neutral()

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Wall time of each stage of the last ``animate`` call, for metrics and benchmarks."""
        return self._stage_seconds

    @property
    def target_mesh(self) -> np.ndarray | None:
        """The mesh (V, 3, ``BASE`` pixels) the driver's last face moves the portrait to,
        at full motion; ``None`` before a neutral is taken. For benchmarks and tests."""
        return None if self._target is None else self._target.copy()

    @property
    def portrait(self) -> Portrait:
        if self._portrait is None:
            self.set_reference(default_reference())
        assert self._portrait is not None
        return self._portrait

    def reset(self) -> None:
        """Forget the driver's neutral; the avatar eases to rest while a new one is taken."""
        self._neutral = None
        self._neutral_sum = None
        self._neutral_count = 0
        self._to_reference = None
        self._filter.reset()
        self._eye_filter.reset()
        self._gaze_filter.reset()

    # -- frames ---------------------------------------------------------------------

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        """The reference moved like ``driver`` (RGB uint8), as ``size``×``size`` RGB uint8."""
        if not isinstance(size, (int, np.integer)) or not 32 <= int(size) <= 2048:
            raise BadInput(f"output size must be an integer in [32, 2048], got {size!r}")
        driver = _check_image(driver, "driver frame")
        portrait = self.portrait
        now = self._clock()
        dt = 1 / 25 if self._last_t is None else float(np.clip(now - self._last_t, 1e-3, 0.5))
        self._last_t = now
        self._age_s += dt
        t0 = time.perf_counter()
        face = self._landmarks(driver)
        t1 = time.perf_counter()
        if face is not None and self._neutral is None:
            self._add_neutral(face.points)
        if face is not None and self._neutral is not None:
            self._track(face.points, dt, portrait)
            self._lost_s = 0.0
            self._presence = min(1.0, self._presence + dt / self.config.ramp_s)
        else:
            self._lost_s += dt
            if self._lost_s > self.config.hold_s or self._neutral is None:
                self._presence *= math.exp(-dt / self.config.ease_s)
        t2 = time.perf_counter()
        out = self._render(portrait, int(size))
        self._stage_seconds = {
            "landmarks": t1 - t0,
            "motion": t2 - t1,
            "render": time.perf_counter() - t2,
        }
        return out

    def _landmarks(self, driver: np.ndarray) -> FaceLandmarks | None:
        h, w = driver.shape[:2]
        k = min(self.config.landmark_side / max(h, w), 1.0)
        # Points are in the pixels of the driver shrunk to ``landmark_side``; but
        # mediapipe crops and resamples the face itself, so a frame up to twice
        # that side goes in whole and its points are scaled (shrinking a 640×480
        # frame with INTER_AREA cost a third of this stage's time).
        shrink = 1.0 if k >= 0.5 else 2 * k
        small = driver
        if shrink < 1:
            small = cv2.resize(
                driver, (round(w * shrink), round(h * shrink)), interpolation=cv2.INTER_AREA
            )
        face = self._tracker.detect(small)
        if face is not None and k != shrink:
            face = face.scaled(k / shrink)
        if face is None or face.score < self.config.min_score:
            return None
        if pose.face_width(face.points) < 8:
            return None
        return face

    def _add_neutral(self, points: np.ndarray) -> None:
        p = points.astype(np.float64)
        self._neutral_sum = p if self._neutral_sum is None else self._neutral_sum + p
        self._neutral_count += 1
        if self._neutral_count >= self.config.neutral_frames:
            assert self._neutral_sum is not None
            self._neutral = (self._neutral_sum / self._neutral_count).astype(np.float32)
            self._neutral_eyes = features.eye_openings(self._neutral)
            self._neutral_gaze = _gazes(self._neutral)
            self._gaze = np.zeros(2)
            self._filter.reset()
            self._eye_filter.reset()
            self._gaze_filter.reset()
            self._fit_neutral()

    def _fit_neutral(self) -> None:
        if self._neutral is not None and self._portrait is not None:
            ref = self._portrait.points
            self._to_reference = pose.fit_similarity(self._neutral[RIGID], ref[RIGID])

    def _track(self, points: np.ndarray, dt: float, portrait: Portrait) -> None:
        """Update the full-motion target mesh from the driver's landmarks."""
        assert self._neutral is not None and self._to_reference is not None
        unit = max(pose.face_width(self._neutral), 1.0)
        smooth = (self._filter(points / unit, dt) * unit).astype(np.float32)
        ref = portrait.points.astype(np.float64)
        motion = pose.transfer(self._neutral, smooth, ref, self._to_reference, self.config.limits)
        expr = motion.expression
        # Brows from their halves' mean motion, scaled: mediapipe reads about half
        # of a brow's motion, and single brow points tremble (brows.py).
        assert self._brows is not None
        brows.apply(expr, ref, self._brows, self.config.brow_gain)
        # Lids from the raw landmarks, with a filter of their own: a blink lasts
        # three or four frames, faster than the landmark filter lets through.
        openings = np.array(features.eye_openings(points))
        raw = openings / np.maximum(self._neutral_eyes, 1e-3)
        eyes = self._eye_filter(raw[:, None], dt)[:, 0]
        ratios = [
            _lid_curve(float(r), self.config.eye_closed_at, self.config.lid_gain) for r in eyes
        ]
        features.set_lids(expr, ref, (ratios[0], ratios[1]))
        # Gaze in eye widths, so narrow and wide eyes look as far; from the raw
        # irises with a filter of their own (a saccade takes a frame). A (nearly)
        # shut eye's iris is a guess, so the gaze is read from the open eyes, each
        # against its own neutral (a wink leaves the other eye looking); while both
        # are shut the last open-eyed gaze is kept.
        seen = raw > GAZE_ALONG_OPEN
        if seen.any():
            shift = (_gazes(points) - self._neutral_gaze)[seen].mean(axis=0)
            # mediapipe's vertical iris estimate rides on the lids (it drops by about
            # half of any lid-gap loss): take that part out, or the iris sinks into
            # every squint and the lids read as narrower than the driver's. In a
            # narrowed eye the last vertical reading is kept, and a lid lowered
            # past the iris takes it down (keep_iris_in_view).
            gaps = openings - np.array(self._neutral_eyes)
            shift[1] += LID_IRIS_SLOPE * float(gaps[seen].mean())
            if raw[seen].min() <= GAZE_ACROSS_OPEN:
                shift[1] = self._gaze[1]
            self._gaze = self._gaze_filter(shift[None, :], dt)[0]
        features.set_gaze(
            expr, ref, self.config.gaze_gain * _past_noise(self._gaze), portrait.gaze_spans
        )
        features.keep_iris_in_view(expr)
        features.unfold_lips(expr)
        self._target = _mesh_for(portrait, motion, expr, self.config.max_depth)
        self.last_motion = motion

    def _idle_target(self, portrait: Portrait) -> np.ndarray | None:
        """The mesh swaying and blinking gently: what shows while no face drives.

        A still portrait reads as a frozen stream; slow, small, deterministic
        motion (a few degrees, a blink every four seconds) reads as alive.
        """
        amount = self.config.idle
        if amount <= 0:
            return None
        t = self._age_s
        yaw = 2.5 * math.sin(2 * math.pi * t / 7.0)
        pitch = 1.2 * math.sin(2 * math.pi * t / 5.9 + 2.0)
        roll = 1.5 * math.sin(2 * math.pi * t / 9.3 + 1.0)
        rotation = _rotation(amount * yaw, amount * pitch, amount * roll)
        ref = portrait.points.astype(np.float64)
        expr = ref.copy()
        phase = ((t + 2.0) % 4.0) / 0.18  # a blink: 0.18 s, every 4 s, the first at 2 s
        shut = math.sin(math.pi * phase) if phase < 1.0 else 0.0
        open_ = 1.0 - min(amount, 1.0) * shut
        features.set_lids(expr, ref, (open_, open_))
        motion = pose.Motion(rotation, 1.0, np.zeros(3), expr)
        return _mesh_for(portrait, motion, expr, self.config.max_depth)

    # -- rendering ------------------------------------------------------------------

    def _render(self, portrait: Portrait, size: int) -> np.ndarray:
        sized = portrait.at(size, self.config.grid)
        mesh = portrait.mesh
        idle = self._idle_target(portrait) if self._presence < 0.999 else None
        rest = mesh.vertices if idle is None else idle
        if self._target is None or self._presence < 1e-3:
            if idle is None:
                return sized.image.copy()
            full = rest
        else:
            full = rest + np.float32(self._presence) * (self._target - rest)
        k = np.float32(size / BASE)
        target = full[:, :2] * k
        # Painter's order: around-the-face first, then face triangles far to near.
        depth = full[mesh.face, 2].mean(axis=1)
        tris = np.concatenate([mesh.back, mesh.face[np.argsort(-depth, kind="stable")]])
        moving = (full[:, :2] != mesh.vertices[:, :2]).any(axis=1)
        details = [features.eye_box(target[:NUM_POINTS], eye) for eye in (0, 1)]
        box_map = backward_map(sized.grid, target, sized.source, tris, moving, details)
        out = warp(sized.image, box_map)
        lm_target = full[:NUM_POINTS]
        lm_source = portrait.points
        open_now = features.eye_openings(lm_target)
        rel = tuple(o / max(r, 1e-3) for o, r in zip(open_now, portrait.eyes_open, strict=True))
        features.paint_eyes(out, lm_target * k, lm_source, (rel[0], rel[1]), portrait.eyeballs)
        mouth = features.mouth_opening(lm_target)
        teeth = portrait.mouth_open > TEETH_OPENING
        start = 0.0 if teeth else portrait.mouth_open
        strength = float(np.clip((mouth - start - 0.02) / 0.05, 0.0, 1.0))
        bite = None if teeth else _bite(lm_source, lm_target, float(k), self.config.max_depth)
        features.paint_mouth(
            out, lm_target * k, strength, portrait.shade, sized.image, lm_source * k, bite
        )
        return out

    def close(self) -> None:
        """Release the landmark graph."""
        self._tracker.close()
