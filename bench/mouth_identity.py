"""Where a grin costs the avatar its identity: dlib's distance on every frame, split by mouth.

    python bench/mouth_identity.py                        # warp, s0 s1 s12 d8 astronaut x d0
    python bench/mouth_identity.py --portraits s0 --driver d19

bench/expression.py samples the identity distance on every 5th frame; this reads
it on every frame after ``--skip`` and splits the frames by the driver's mouth
(dlib's inner-lip gap over the eye-corner distance above ``--open``, or not), so
a cost that comes with the opening shows apart from one that is always there.
Two readings of what is inside the avatar's opening (no face model: pixels inside
the warp's own inner-lip polygon, over the open frames): the share of dark pixels
(grey < 70, a cavity) and of bright ones (> 150, teeth). The last row is the
driver against its own neutral (the mean descriptor of the frames before
``--skip``): how far dlib's descriptor moves with the same expression on a real
face. Run it in two trees (``PYTHONPATH``) to compare them.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.expression import VideoClock, read_portrait, read_video
from mirage.models import create_animator
from mirage.models.avatar.warp.animator import WarpAnimator
from mirage.models.avatar.warp.topology import LIP_LOWER, LIP_UPPER
from tests.dlib_face import DlibFace

PORTRAITS = ("s0", "s1", "s12", "d8", "astronaut")


def opening_shares(image: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """Dark and bright pixel shares inside the inner-lip polygon of ``points`` (image px)."""
    poly = np.concatenate([points[LIP_UPPER, :2], points[LIP_LOWER[-2:0:-1], :2]])
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], (255,))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[mask > 0]
    if grey.size == 0:
        return math.nan, math.nan
    return float((grey < 70).mean()), float((grey > 150).mean())


def _mean(values: list[float]) -> float:
    ok = [v for v in values if math.isfinite(v)]
    return float(np.mean(ok)) if ok else math.nan


def _f(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--portraits", nargs="+", default=list(PORTRAITS))
    ap.add_argument("--driver", default="d0")
    ap.add_argument("--skip", type=int, default=10, help="first frames left out (neutral pose)")
    ap.add_argument("--open", type=float, default=0.1, help="driver mouth gap counted as open")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    dlib_face = DlibFace()
    frames, fps = read_video(args.driver)
    driver = [dlib_face.measure(f) if i >= args.skip else None for i, f in enumerate(frames)]
    is_open = [m is not None and m.mouth > args.open for m in driver]
    counted = [i >= args.skip and m is not None for i, m in enumerate(driver)]
    lines = [
        "| portrait | identity, all frames: mean / max | mouth open | mouth closed "
        "| dark share (open) | bright share (open) |",
        "|---|---|---|---|---|---|",
    ]
    for name in args.portraits:
        reference = read_portrait(name)
        ref_desc = dlib_face.descriptor(reference)
        animator = create_animator("warp", clock=VideoClock(fps), reference=reference)
        assert isinstance(animator, WarpAnimator)
        dist: list[float] = []
        shares: list[tuple[float, float]] = []
        try:
            for i, frame in enumerate(frames):
                out = animator.animate(frame, 512)
                if not counted[i]:
                    continue
                desc = dlib_face.descriptor(out) if ref_desc is not None else None
                dist.append(math.nan if desc is None else float(np.linalg.norm(desc - ref_desc)))
                if is_open[i] and animator._target is not None:
                    shares.append(opening_shares(out, animator._target[:478]))
        finally:
            animator.close()
        flags = [o for o, c in zip(is_open, counted, strict=True) if c]
        opened = [d for d, o in zip(dist, flags, strict=True) if o]
        closed = [d for d, o in zip(dist, flags, strict=True) if not o]
        top = max((d for d in dist if math.isfinite(d)), default=math.nan)
        dark = _mean([s[0] for s in shares])
        bright = _mean([s[1] for s in shares])
        lines.append(
            f"| {name} | {_f(_mean(dist))} / {_f(top)} | {_f(_mean(opened))} "
            f"| {_f(_mean(closed))} | {_f(dark)} | {_f(bright)} |"
        )
        print(f"{name}: done", file=sys.stderr)
    neutral = [dlib_face.descriptor(f) for f in frames[max(args.skip - 5, 0) : args.skip]]
    base = np.mean([d for d in neutral if d is not None], axis=0)
    own = []
    for i, frame in enumerate(frames):
        desc = dlib_face.descriptor(frame) if counted[i] else None
        own.append(math.nan if desc is None else float(np.linalg.norm(desc - base)))
    own_open = [d for d, o, c in zip(own, is_open, counted, strict=True) if c and o]
    own_closed = [d for d, o, c in zip(own, is_open, counted, strict=True) if c and not o]
    own_top = max((d for d in own if math.isfinite(d)), default=math.nan)
    lines.append(
        f"| driver {args.driver} vs its neutral | {_f(_mean(own))} / {_f(own_top)} "
        f"| {_f(_mean(own_open))} | {_f(_mean(own_closed))} | | |"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(
        f"warp x {args.driver}, output 512, {sum(counted)} frames "
        f"({sum(o and c for o, c in zip(is_open, counted, strict=True))} with the mouth open), "
        f"load {load:.1f}; dlib descriptor distance to the reference:\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
