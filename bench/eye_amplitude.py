"""Where a driver's eye motion goes on its way to the avatar, read by two face models.

    python bench/eye_amplitude.py                          # s1, s0 x d19, d0; lid_gain 1 and 1.8
    python bench/eye_amplitude.py --portraits s1 --drivers d19 --gains 1.8

For every 2nd frame (after the first 5, the neutral) the lid opening is read
four ways: dlib's eye aspect ratio and mediapipe's lid gap on the driver, the
animator's own target mesh, and dlib and mediapipe again on the avatar. Each
series is divided by its median, so a narrow and a round eye compare, and the
table gives each one's standard deviation: how far the eye moves, relative to
its own opening. The last two columns are the avatar's relative motion over
the driver's, once read by dlib on both and once by mediapipe on both: two
independent readings of the same gain (1 = the avatar's eye moves as far,
relatively, as the driver's). bench/expression.py's eye gain is in absolute
eye-aspect units instead, so a round-eyed portrait reads higher there.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.expression import VideoClock, read_portrait, read_video
from mirage.models import create_animator
from mirage.models.avatar.warp.animator import WarpAnimator
from mirage.models.avatar.warp.features import eye_openings
from mirage.models.face.mesh import FaceMesh
from tests.dlib_face import DlibFace

NUM_POINTS = 478


def relative_motion(portrait: str, driver: str, gain: float) -> tuple[np.ndarray, int]:
    """Relative std of (driver dlib, driver mp, target mesh, avatar dlib, avatar mp)."""
    dlib_face, mesh = DlibFace(), FaceMesh(static=True)
    frames, fps = read_video(driver)
    animator = create_animator(
        "warp", clock=VideoClock(fps), reference=read_portrait(portrait), lid_gain=gain
    )
    assert isinstance(animator, WarpAnimator)
    rows = []
    try:
        for i, frame in enumerate(frames):
            out = animator.animate(frame, 512)
            if i < 5 or i % 2:
                continue
            d, a = dlib_face.measure(frame), dlib_face.measure(out)
            md, ma = mesh.detect(frame), mesh.detect(out)
            target = animator._target
            if d is None or a is None or md is None or ma is None or target is None:
                continue
            rows.append(
                [
                    d.eyes,
                    np.mean(eye_openings(md.points)),
                    np.mean(eye_openings(target[:NUM_POINTS])),
                    a.eyes,
                    np.mean(eye_openings(ma.points)),
                ]
            )
    finally:
        animator.close()
        mesh.close()
    series = np.array(rows)
    return (series / np.median(series, axis=0)).std(axis=0), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--portraits", nargs="+", default=["s1", "s0"])
    parser.add_argument("--drivers", nargs="+", default=["d19", "d0"])
    parser.add_argument("--gains", nargs="+", type=float, default=[1.0, 1.8])
    args = parser.parse_args()
    print(
        "| pair | lid_gain | frames | driver dlib | driver mp | target mesh | avatar dlib "
        "| avatar mp | gain (dlib) | gain (mp) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for driver in args.drivers:
        for portrait in args.portraits:
            for gain in args.gains:
                s, n = relative_motion(portrait, driver, gain)
                cells = " | ".join(f"{v:.3f}" for v in s)
                print(
                    f"| {portrait} x {driver} | {gain:g} | {n} | {cells} "
                    f"| {s[3] / s[0]:.2f} | {s[4] / s[1]:.2f} |"
                )


if __name__ == "__main__":
    main()
