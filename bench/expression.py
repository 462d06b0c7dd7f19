"""Expression fidelity of a face animator, measured with an independent face model (dlib).

    python bench/expression.py                 # warp, every shared portrait x d0, d19, d19+roll
    python bench/expression.py --portraits s0 astronaut --drivers d19 --backend warp
    python bench/expression.py --media /tmp/lp --drivers d3   # a driver that turns its head
    python bench/expression.py --media /tmp/lp --portraits s9 s22   # portraits found there

Head turns: no shared video turns far, but the repository the shared media come
from (LivePortrait, the commit named in shared/media/LICENSES.md, same licence)
has more drivers; d3 turns to about ±25° of yaw and 20° of pitch (by the
animator's own estimate). Copy it into a folder and pass that folder with
``--media``: ``git show 1986663:assets/examples/driving/d3.mp4 > /tmp/lp/d3.mp4``
in a clone of https://github.com/KwaiVGI/LivePortrait.
For each pair the last table reports, over the frames where the animator turns
the head by at least ``--turned`` degrees (yaw or pitch, its own pose estimate),
how much the mesh tears (``meshwarp.distortion``: area of folded skin triangles
and area gained by stretched ones, pixels² at 512) and dlib's identity distance on
those frames: a fold or a streak that dlib notices moves the identity; and the head
turn read by mediapipe on both faces (yaw and pitch against the first face it finds,
r and gain over the whole run), a second reading of dlib's yaw and pitch columns.
Its last two columns put the tearing beside what a real face does: the same
triangles over the *driver's* own mediapipe landmarks (its first face → this
frame), both faces scaled to one skin area, as shares of it (``skin_share``). A
real head that turns folds its far side away and widens its near side; a warp
that tears no more than that is not what a viewer notices.

For each portrait/driver pair the animator is driven by every frame of the
video (at the video's own clock, output 512) and dlib's 68-point landmarks are
read on the driver frame and on the avatar frame (tests/dlib_face.py): mouth
opening, mouth width and corner height, eye openness, gaze (dark-pupil centroid
inside dlib's eye contour, horizontal and vertical; ``gaze_x_both`` / ``gaze_y_both``
the same over frames where both faces have both eyes open, so a wink or a lid read
as shut on one face does not switch which eyes are averaged), brow height, head roll
and yaw. The first table is the
Pearson correlation of each signal between driver and avatar over the frames
where dlib finds both faces (the first ``--skip`` frames, where the animator
takes the driver's neutral pose, are left out), with the identity distance of
the avatar to the reference portrait (dlib's 128-d descriptor; < 0.6 is the same
person by dlib's own threshold). The last column checks the gaze reading with
a second, independent model: the Pearson r between dlib's pupil centroid and
mediapipe's iris landmark (both in eye widths between the corners) over the
same avatar frames. The second table is the gain: the avatar's standard
deviation of each signal over the driver's (1 = as much motion); its last column
is the mouth gain read by mediapipe instead (inner-lip gap over the eye-corner
distance, driver and avatar), which tells a mouth that opens too little from one
that dlib reads too little (a moustache over the lips, say); the two after it are
mediapipe's brow height (``_mediapipe_brow``, as dlib's ``brow``) on the avatar
against the driver's, r and gain: dlib and mediapipe disagreed on brows before.
The last rows show how much each driver moves (standard deviation): a
correlation over a signal that hardly moves is mostly landmark noise.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.models import create_animator
from mirage.models.avatar.reference import default_reference
from mirage.models.avatar.warp import features, pose
from mirage.models.avatar.warp.animator import WarpAnimator
from mirage.models.avatar.warp.meshwarp import Distortion, distortion, signed_areas
from mirage.models.avatar.warp.topology import RIGID, face_triangles
from mirage.models.face.mesh import NUM_POINTS, FaceMesh
from tests.dlib_face import SIGNALS, DlibFace, Signals

SHARED = Path(os.environ.get("MIRAGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
PORTRAITS = ("s0", "s1", "s12", "d8", "astronaut")
DRIVERS = ("d0", "d19", "d19+roll")


class VideoClock:
    """Each call is one frame of the video later."""

    def __init__(self, fps: float) -> None:
        self.t, self.step = 0.0, 1.0 / fps

    def __call__(self) -> float:
        self.t += self.step
        return self.t


#: Head roll the shared videos lack, made from them: ``<video>+roll`` turns each
#: frame in the image plane by ROLL_DEGREES * sin(2 pi t / ROLL_PERIOD_S).
ROLL_DEGREES = 12.0
ROLL_PERIOD_S = 3.0


def rolled(frames: list[np.ndarray], fps: float) -> list[np.ndarray]:
    """``frames`` with a real face turned in the image plane, slowly back and forth."""
    out = []
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        angle = ROLL_DEGREES * math.sin(2 * math.pi * i / fps / ROLL_PERIOD_S)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out.append(cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return out


def find_media(name: str, media: Sequence[Path] = ()) -> Path:
    """``shared/media/<name>``, else the first ``--media`` folder that holds it."""
    for folder in [SHARED / "media", *media]:
        if (folder / name).is_file():
            return folder / name
    looked = ", ".join(str(f) for f in [SHARED / "media", *media])
    raise SystemExit(f"cannot find {name} in {looked} (set MIRAGE_SHARED or pass --media)")


def read_video(name: str, media: Sequence[Path] = ()) -> tuple[list[np.ndarray], float]:
    """The frames (RGB) and frame rate of ``<name>.mp4`` (or ``<name>+roll``)."""
    if name.endswith("+roll"):
        frames, fps = read_video(name.removesuffix("+roll"), media)
        return rolled(frames, fps), fps
    path = find_media(f"{name}.mp4", media)
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read {path}")
    return frames, fps


def read_portrait(name: str, media: Sequence[Path] = ()) -> np.ndarray:
    """The default portrait, ``shared/media/<name>.jpg`` or one in a ``--media`` folder."""
    if name == "astronaut":
        return default_reference()
    path = find_media(f"{name}.jpg", media)
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class PairResult:
    portrait: str
    driver: str
    corr: dict[str, float]
    gain: dict[str, float]
    identity: tuple[float, float]  # mean, max descriptor distance to the reference
    frames: int  # frames where dlib read both faces
    cross: float  # r of dlib's and mediapipe's horizontal gaze on the avatar frames
    mouth_mp: float  # mediapipe's mouth gain (avatar std / driver std), a second reading
    brow_mp: tuple[float, float]  # mediapipe's brow height, avatar vs driver: (r, gain)
    eyes_mp: tuple[float, float, float, float]  # mediapipe's eyes r, gain, gaze_x r, gain
    head_mp: tuple[float, float, float, float]  # mediapipe's yaw r, gain, pitch r, gain
    turned: Turned
    seconds: float


@dataclass(frozen=True)
class Turned:
    """The frames where the animator turned the head by at least ``--turned`` degrees."""

    frames: int
    folded: float  # mean area of folded skin triangles, pixels² at 512
    stretched: float  # mean area gained by stretched skin triangles, pixels² at 512
    identity: float  # dlib's mean descriptor distance to the reference on those frames
    max_yaw: float  # the largest |yaw| / |pitch| the animator turned to, degrees
    max_pitch: float
    share: tuple[float, float]  # the avatar's folded, stretched skin (skin_share), mean
    own_share: tuple[float, float]  # the driver's own face's on the same frames


def _mediapipe_gaze(points: np.ndarray) -> float:
    """mediapipe's iris centre between the eye corners (eye widths), both eyes averaged."""
    return float((features.gaze(points, 0)[0] + features.gaze(points, 1)[0]) / 2)


def _mediapipe_mouth(points: np.ndarray) -> float:
    """mediapipe's inner-lip gap over its eye-corner distance (as dlib's ``mouth``)."""
    return float(np.linalg.norm(points[13, :2] - points[14, :2]) / pose.face_width(points))


#: mediapipe's brow points (upper and lower edge of each brow), and its lid centres.
MP_BROWS = np.array([70, 63, 105, 66, 107, 46, 53, 52, 65, 55, 300, 293, 334, 296, 336, 276, 283,
                     282, 295, 285])  # fmt: skip
MP_EYE_CENTRES = ((33, 133, 159, 145), (263, 362, 386, 374))


def _mediapipe_brow(points: np.ndarray) -> float:
    """mediapipe's brow height above the line through the eye centres (as dlib's ``brow``)."""
    p = points[:, :2].astype(np.float64)
    c_r, c_l = (p[list(e)].mean(axis=0) for e in MP_EYE_CENTRES)
    along = (c_l - c_r) / max(float(np.linalg.norm(c_l - c_r)), 1e-6)
    up = np.array([along[1], -along[0]])
    return float(np.mean((p[MP_BROWS] - (c_r + c_l) / 2) @ up) / pose.face_width(points))


def head_angles(points: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """mediapipe's yaw and pitch (degrees) of each face against the first one found
    (NaN where none): the head turn read by a second model, beside dlib's."""
    first = next((p for p in points if p is not None), None)
    yaw, pitch = np.full(len(points), math.nan), np.full(len(points), math.nan)
    for i, p in enumerate(points):
        if p is not None and first is not None:
            rotation = pose.fit_similarity(first[RIGID], p[RIGID]).rotation
            yaw[i], pitch[i], _ = pose.euler_degrees(rotation)
    return yaw, pitch


@dataclass(frozen=True)
class MediapipeReads:
    """What mediapipe reads on each frame of a sequence (NaN where it finds no face)."""

    mouth: np.ndarray
    brow: np.ndarray
    eyes: np.ndarray
    gaze: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    points: tuple[np.ndarray | None, ...]  # the landmarks themselves

    @staticmethod
    def of(points: list[np.ndarray | None]) -> MediapipeReads:
        def each(read: Callable[[np.ndarray], float]) -> np.ndarray:
            return np.array([math.nan if p is None else read(p) for p in points])

        yaw, pitch = head_angles(points)
        return MediapipeReads(
            mouth=each(_mediapipe_mouth),
            brow=each(_mediapipe_brow),
            eyes=each(lambda p: float(np.mean(features.eye_openings(p)))),
            gaze=each(_mediapipe_gaze),
            yaw=yaw,
            pitch=pitch,
            points=tuple(points),
        )


def mediapipe_reads(frames: list[np.ndarray], skip: int) -> MediapipeReads:
    """mediapipe's readings of each frame (none in the first ``skip``)."""
    mesh = FaceMesh(static=True)
    try:
        found = [mesh.detect(f) if i >= skip else None for i, f in enumerate(frames)]
    finally:
        mesh.close()
    return MediapipeReads.of([None if f is None else f.points for f in found])


#: The skin area (pixels²) ``skin_share`` scales both faces to: a face filling about
#: half the width of a 512 output, so ``distortion``'s 2 px² allowance means the same.
SKIN_AREA = 40000.0


def skin_share(source: np.ndarray, target: np.ndarray, skin: np.ndarray) -> Distortion:
    """``distortion`` of the skin triangles as shares of the skin's area, with each face
    first scaled to the same total area: a face that only comes nearer tears nothing.

    Applied alike to the avatar (portrait → frame) and to the driver's own face (its
    first frame → this one), so the two say whether the warp tears the skin more
    than a real face's projection does when it turns.
    """

    def unit(points: np.ndarray) -> np.ndarray:
        xy = points[:, :2].astype(np.float64)
        area = float(np.abs(signed_areas(xy, skin)).sum())
        centre = xy.mean(axis=0)
        return (xy - centre) * math.sqrt(SKIN_AREA / max(area, 1e-9)) + centre

    tear = distortion(unit(source), unit(target), skin)
    return Distortion(tear.folded / SKIN_AREA, tear.stretched / SKIN_AREA)


def _gain(a: np.ndarray, d: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(d)
    return float(a[ok].std() / d[ok].std()) if ok.sum() > 4 and d[ok].std() > 0 else math.nan


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 5 or a.std() < 1e-9 or b.std() < 1e-9:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def series(measured: list[Signals | None], name: str) -> np.ndarray:
    return np.array([math.nan if m is None else m.get(name) for m in measured])


def run_pair(
    dlib_face: DlibFace,
    backend: str,
    portrait_name: str,
    driver_name: str,
    frames: list[np.ndarray],
    fps: float,
    driver: list[Signals | None],
    driver_mp: MediapipeReads,
    skip: int,
    identity_every: int,
    options: dict[str, float],
    turn_degrees: float,
    media: Sequence[Path] = (),
) -> PairResult:
    reference = read_portrait(portrait_name, media)
    ref_desc = dlib_face.descriptor(reference)
    animator = create_animator(backend, clock=VideoClock(fps), reference=reference, **options)
    avatar: list[Signals | None] = []
    distances = []
    mesh = FaceMesh(static=True)
    pairs: list[tuple[float, float]] = []
    avatar_points: list[np.ndarray | None] = [None] * len(frames)
    tears: list[Distortion] = []
    shares: list[Distortion] = []  # the avatar's skin tears, as shares (skin_share)
    own_shares: list[Distortion] = []  # the driver's own face's, on the same frames
    driver_first = next((p for p in driver_mp.points if p is not None), None)
    turned_ids: list[float] = []
    angles: list[tuple[float, float]] = []  # |yaw|, |pitch| the animator turned to
    skin = face_triangles()[0]
    warp = animator if isinstance(animator, WarpAnimator) else None
    t0 = time.perf_counter()
    try:
        for i, frame in enumerate(frames):
            out = animator.animate(frame, 512)
            avatar.append(dlib_face.measure(out) if i >= skip else None)
            found = mesh.detect(out) if i >= skip else None
            if found is not None:
                avatar_points[i] = found.points
            if avatar[-1] is not None and found is not None:
                pairs.append((avatar[-1].gaze_x, float(_mediapipe_gaze(found.points))))
            if i < skip:
                continue
            motion = None if warp is None else warp.last_motion
            target = None if warp is None else warp.target_mesh
            turned = False
            if warp is not None and motion is not None and target is not None:
                yaw, pitch, _ = motion.degrees
                angles.append((abs(yaw), abs(pitch)))
                turned = max(abs(yaw), abs(pitch)) >= turn_degrees
                if turned:
                    tears.append(distortion(warp.portrait.mesh.vertices, target, skin))
                    shares.append(skin_share(warp.portrait.points, target[:NUM_POINTS], skin))
                    own = driver_mp.points[i]
                    if own is not None and driver_first is not None:
                        own_shares.append(skin_share(driver_first, own, skin))
            sampled = (i - skip) % identity_every == 0
            if ref_desc is not None and (sampled or turned):
                desc = dlib_face.descriptor(out)
                if desc is not None:
                    distance = float(np.linalg.norm(desc - ref_desc))
                    if sampled:
                        distances.append(distance)
                    if turned:
                        turned_ids.append(distance)
    finally:
        if isinstance(animator, WarpAnimator):
            animator.close()  # its landmark graph
        mesh.close()
    seconds = time.perf_counter() - t0
    both = [a is not None and d is not None for a, d in zip(avatar, driver, strict=True)]
    corr, gain = {}, {}
    for name in SIGNALS:
        a, d = series(avatar, name), series(driver, name)
        corr[name] = pearson(d, a)
        ok = np.isfinite(a) & np.isfinite(d)
        gain[name] = (
            float(a[ok].std() / d[ok].std()) if ok.sum() > 4 and d[ok].std() > 0 else math.nan
        )
    ident = (float(np.mean(distances)), float(np.max(distances))) if distances else (math.nan,) * 2
    both_gaze = np.array(pairs).reshape(-1, 2)
    cross = pearson(both_gaze[:, 0], both_gaze[:, 1])
    avatar_mp = MediapipeReads.of(avatar_points)
    mouth_mp = _gain(avatar_mp.mouth, driver_mp.mouth)
    brow_mp = (pearson(driver_mp.brow, avatar_mp.brow), _gain(avatar_mp.brow, driver_mp.brow))
    eyes_mp = (
        pearson(driver_mp.eyes, avatar_mp.eyes),
        _gain(avatar_mp.eyes, driver_mp.eyes),
        pearson(driver_mp.gaze, avatar_mp.gaze),
        _gain(avatar_mp.gaze, driver_mp.gaze),
    )
    head_mp = (
        pearson(driver_mp.yaw, avatar_mp.yaw),
        _gain(avatar_mp.yaw, driver_mp.yaw),
        pearson(driver_mp.pitch, avatar_mp.pitch),
        _gain(avatar_mp.pitch, driver_mp.pitch),
    )
    nan = math.nan
    turned = Turned(
        frames=len(tears),
        folded=float(np.mean([t.folded for t in tears])) if tears else nan,
        stretched=float(np.mean([t.stretched for t in tears])) if tears else nan,
        identity=float(np.mean(turned_ids)) if turned_ids else nan,
        max_yaw=max((a[0] for a in angles), default=nan),
        max_pitch=max((a[1] for a in angles), default=nan),
        share=_mean_share(shares),
        own_share=_mean_share(own_shares),
    )
    return PairResult(
        portrait_name, driver_name, corr, gain, ident, sum(both), cross, mouth_mp, brow_mp,
        eyes_mp, head_mp, turned, seconds,
    )  # fmt: skip


def _mean_share(shares: list[Distortion]) -> tuple[float, float]:
    if not shares:
        return math.nan, math.nan
    return float(np.mean([t.folded for t in shares])), float(np.mean([t.stretched for t in shares]))


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def table(
    results: list[PairResult],
    drivers: dict[str, list[Signals | None]],
    drivers_mp: dict[str, MediapipeReads],
    skip: int,
    turn_degrees: float,
) -> str:
    head = " | ".join(SIGNALS)
    rule = "|".join(["---"] * (len(SIGNALS) + 4))
    lines = [
        f"| pair (portrait x driver) | {head} | identity mean / max | frames | gaze_x dlib~mp |",
        f"|{rule}|",
    ]
    for r in results:
        cells = " | ".join(_f(r.corr[s]) for s in SIGNALS)
        ident = f"{_f(r.identity[0])} / {_f(r.identity[1])}"
        lines.append(
            f"| {r.portrait} x {r.driver} | {cells} | {ident} | {r.frames} | {_f(r.cross)} |"
        )
    lines += [
        "",
        f"| gain: avatar std / driver std | {head} | mouth (mp) | brow r (mp) | brow gain (mp) |",
        f"|{rule}|",
    ]
    for r in results:
        cells = " | ".join(_f(r.gain[s]) for s in SIGNALS)
        mp = f"{_f(r.mouth_mp)} | {_f(r.brow_mp[0])} | {_f(r.brow_mp[1])}"
        lines.append(f"| {r.portrait} x {r.driver} | {cells} | {mp} |")
    for name, measured in drivers.items():
        spread = []
        for s in SIGNALS:
            v = series(measured, s)[skip:]
            spread.append(_f(float(np.nanstd(v)), 3) if np.isfinite(v).any() else "n/a")
        lines.append(f"| driver {name}: std | " + " | ".join(spread) + " | | | |")
    lines += [
        "",
        "| second reading: mediapipe on both faces | eyes r / gain (mp) | gaze_x r / gain (mp) |",
        "|---|---|---|",
    ]
    for r in results:
        e = r.eyes_mp
        lines.append(
            f"| {r.portrait} x {r.driver} | {_f(e[0])} / {_f(e[1])} | {_f(e[2])} / {_f(e[3])} |"
        )
    for name, measured in drivers.items():
        mp = drivers_mp[name]
        eyes = pearson(series(measured, "eyes"), mp.eyes)
        gaze = pearson(series(measured, "gaze_x"), mp.gaze)
        lines.append(f"| driver {name}: dlib ~ mediapipe, r | {_f(eyes)} | {_f(gaze)} |")
    lines += [
        "",
        f"| turned >= {turn_degrees:g} deg (animator's pose) | frames | max yaw / pitch deg "
        "| folded px² | stretched px² | identity | yaw r / gain (mp) | pitch r / gain (mp) "
        "| skin folded % avatar / driver's own | stretched % avatar / own |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, h = r.turned, r.head_mp
        lines.append(
            f"| {r.portrait} x {r.driver} | {t.frames} | {_f(t.max_yaw, 0)} / {_f(t.max_pitch, 0)}"
            f" | {_f(t.folded, 0)} | {_f(t.stretched, 0)} | {_f(t.identity)}"
            f" | {_f(h[0])} / {_f(h[1])} | {_f(h[2])} / {_f(h[3])}"
            f" | {_f(100 * t.share[0])} / {_f(100 * t.own_share[0])}"
            f" | {_f(100 * t.share[1])} / {_f(100 * t.own_share[1])} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", default="warp")
    ap.add_argument("--portraits", nargs="+", default=list(PORTRAITS))
    ap.add_argument("--drivers", nargs="+", default=list(DRIVERS))
    ap.add_argument("--frames", type=int, default=0, help="at most this many frames (0: all)")
    ap.add_argument(
        "--option", action="append", default=[], help="backend option key=value (a number)"
    )
    ap.add_argument("--skip", type=int, default=10, help="first frames left out (neutral pose)")
    ap.add_argument("--identity-every", type=int, default=5, help="descriptor on every n-th frame")
    ap.add_argument(
        "--media", type=Path, action="append", default=[], help="more drivers, portraits"
    )
    ap.add_argument(
        "--turned", type=float, default=15.0, help="degrees from which a frame counts as turned"
    )
    args = ap.parse_args()
    cv2.setNumThreads(1)
    options = {k: float(v) for k, v in (o.split("=", 1) for o in args.option)}
    dlib_face = DlibFace()
    measured: dict[str, list[Signals | None]] = {}
    measured_mp: dict[str, MediapipeReads] = {}
    results = []
    for driver_name in args.drivers:
        frames, fps = read_video(driver_name, args.media)
        frames = frames[: args.frames or None]
        driver = [dlib_face.measure(f) if i >= args.skip else None for i, f in enumerate(frames)]
        measured[driver_name] = driver
        driver_mp = mediapipe_reads(frames, args.skip)
        measured_mp[driver_name] = driver_mp
        for portrait_name in args.portraits:
            r = run_pair(
                dlib_face, args.backend, portrait_name, driver_name, frames, fps, driver,
                driver_mp, args.skip, args.identity_every, options, args.turned, args.media,
            )  # fmt: skip
            print(f"{portrait_name} x {driver_name}: {r.seconds:.1f} s", file=sys.stderr)
            results.append(r)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    opts = " ".join(args.option) or "default options"
    print(f"backend {args.backend} ({opts}), output 512, load {load:.1f}; Pearson r (dlib):\n")
    print(table(results, measured, measured_mp, args.skip, args.turned))


if __name__ == "__main__":
    main()
