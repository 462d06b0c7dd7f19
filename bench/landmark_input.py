"""Landmarks on a webcam-sized driver: pre-shrunk (INTER_AREA) vs handed to mediapipe whole.

    python bench/landmark_input.py            # 640x480 drivers, as the browser's camera sends

Both ways in one process, alternating frame by frame (two tracking ``FaceMesh``
graphs, one core as in ``bench/avatar.py``), so machine load hits both alike.
"Shrink" is what ``WarpAnimator`` did before: the whole frame resized to
``landmark_side`` (512) with INTER_AREA, then mediapipe. "Whole" is what it does
now: the frame as it is, the points scaled to the same 512 px units afterwards.
The last column is how far the two ways' landmarks lie apart, in face widths.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from avatar import driver_frames, one_core

from mirage.models.face.mesh import FaceMesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--camera", default="640x480", help="WxH the drivers are padded to")
    parser.add_argument("--side", type=int, default=512, help="landmark_side")
    args = parser.parse_args()
    cw, _, ch = args.camera.partition("x")
    where = one_core()
    frames = driver_frames(camera=(int(cw), int(ch)))
    load = os.getloadavg()[0]
    shrink, whole = FaceMesh(static=False), FaceMesh(static=False)
    wall: dict[str, list[float]] = {"shrink": [], "whole": []}
    cpu: dict[str, list[float]] = {"shrink": [], "whole": []}
    apart: list[float] = []
    for i, frame in enumerate(frames):
        h, w = frame.shape[:2]
        k = min(args.side / max(h, w), 1.0)
        t, c = time.perf_counter(), time.process_time()
        small = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        a = shrink.detect(small)
        wall["shrink"].append(time.perf_counter() - t)
        cpu["shrink"].append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        b = whole.detect(frame)
        b = b.scaled(k) if b is not None else None
        wall["whole"].append(time.perf_counter() - t)
        cpu["whole"].append(time.process_time() - c)
        if a is not None and b is not None and i >= 10:
            width = float(np.ptp(a.points[:, 0]))
            apart.append(
                float(np.abs(a.points[:, :2] - b.points[:, :2]).max(axis=1).mean()) / width
            )
    shrink.close()
    whole.close()
    print(
        f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, {where}, "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        "| landmarks input | wall p50 ms | wall p95 ms | cpu ms (mean) | points apart (face widths) |"
    )
    print("|---|---|---|---|---|")
    for name in ("shrink", "whole"):
        ws, cs = np.array(wall[name][10:]) * 1000, np.array(cpu[name][10:]) * 1000
        gap = (
            "–"
            if name == "shrink"
            else f"{np.mean(apart):.4f} mean, {np.percentile(apart, 95):.4f} p95"
        )
        print(
            f"| {name} | {np.median(ws):.2f} | {np.percentile(ws, 95):.2f} | {cs.mean():.2f} | {gap} |"
        )


if __name__ == "__main__":
    main()
