"""Did a warp change alter what the user sees? PSNR of this tree's renders against another's.

    git archive OLD | tar -x -C /tmp/old      # the tree to compare against
    (cd /tmp/old && python /path/to/bench/warp_render_diff.py --save /tmp/old.npz)
    python bench/warp_render_diff.py --against /tmp/old.npz

Renders the first ``--frames`` of d19, padded to ``--camera`` (640x480, as the
browser sends), with the s0 portrait and the default astronaut at 512 px, on a
fake clock (the same motion whatever the load). Prints PSNR over the whole frame and
over the box where the face moves (pixels the old render changes over the clip).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path.cwd()))

from avatar import SHARED, _fit

from mirage.models import create_animator
from mirage.models.avatar.reference import default_reference


def fake_clock(fps: float = 30.0) -> Callable[[], float]:
    """A clock that moves one frame per call."""
    ticks = itertools.count(1)
    return lambda: next(ticks) / fps


def render(frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    s0 = cv2.cvtColor(cv2.imread(str(SHARED / "media" / "s0.jpg")), cv2.COLOR_BGR2RGB)
    out = {}
    for name, reference in (("s0", s0), ("astronaut", default_reference())):
        animator = create_animator("warp", clock=fake_clock())
        animator.set_reference(reference)
        out[name] = np.stack([animator.animate(f, 512) for f in frames])
        animator.close()
    return out


def psnr(mse: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(float(mse), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--save", help="write this tree's renders here (.npz)")
    parser.add_argument("--against", help="compare this tree's renders with these (.npz)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--camera", default="640x480")
    args = parser.parse_args()
    cw, _, ch = args.camera.partition("x")
    cap = cv2.VideoCapture(str(SHARED / "media" / "d19.mp4"))
    frames = []
    while len(frames) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(_fit(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), int(cw), int(ch)))
    cap.release()
    new = render(frames)
    if args.save:
        np.savez_compressed(args.save, **new)
    if not args.against:
        return
    old = np.load(args.against)
    print(f"d19, {len(frames)} frames at {args.camera}, output 512")
    print(
        "| portrait | PSNR mean dB | worst frame dB | face box | box PSNR mean dB | box worst dB |"
    )
    print("|---|---|---|---|---|---|")
    for name in new:
        x, y = old[name].astype(np.float64), new[name].astype(np.float64)
        mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
        ys, xs = np.nonzero(x.std(axis=0).max(axis=2) > 1.0)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        bmse = ((x[:, box[0], box[1]] - y[:, box[0], box[1]]) ** 2).reshape(len(x), -1).mean(axis=1)
        print(
            f"| {name} | {psnr(mse.mean()):.1f} | {psnr(mse.max()):.1f} | "
            f"{xs.max() - xs.min() + 1}×{ys.max() - ys.min() + 1} | "
            f"{psnr(bmse.mean()):.1f} | {psnr(bmse.max()):.1f} |"
        )


if __name__ == "__main__":
    main()
