"""The mesh warp alone: CPU ms per call of ``backward_map`` and ``warp`` on real frames.

    python bench/meshwarp.py                 # output 512, grid 2 (the defaults)
    python bench/meshwarp.py --grid 4

``WarpAnimator`` runs as the server runs it (default portrait, d0 then d19 as
drivers, one core), and the arguments of each ``backward_map`` call are kept;
then the calls are replayed ``--repeat`` times and timed with
``time.process_time`` (CPU of this process, less load-dependent than wall time)
and ``time.perf_counter``. Run it on two trees to compare them: the replayed
inputs are the same as long as the landmarks are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from avatar import driver_frames, one_core

import mirage.models.avatar.warp.animator as animator_module
from mirage.models import create_animator
from mirage.models.avatar.reference import default_reference
from mirage.models.avatar.warp.meshwarp import backward_map, warp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--frames", type=int, default=60, help="frames captured")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    where = one_core()
    frames = driver_frames(limit=args.frames + 10)
    calls: list[tuple[Any, ...]] = []

    def keep(*call: Any) -> Any:
        calls.append(call)
        return backward_map(*call)

    animator_module.backward_map = keep  # type: ignore[assignment]
    animator = create_animator("warp", grid=args.grid)
    animator.set_reference(default_reference())
    images = []
    for frame in frames:
        animator.animate(frame, args.size)
        images.append(animator.portrait.at(args.size, args.grid).image)
    animator.close()
    animator_module.backward_map = backward_map  # type: ignore[assignment]
    calls, images = calls[10:], images[10:]  # past the neutral pose and the fade-in
    cpu: dict[str, list[float]] = {"backward_map": [], "warp": []}
    wall: dict[str, list[float]] = {"backward_map": [], "warp": []}
    for _ in range(args.repeat):
        for call, image in zip(calls, images, strict=True):
            t, c = time.perf_counter(), time.process_time()
            box_map = backward_map(*call)
            wall["backward_map"].append(time.perf_counter() - t)
            cpu["backward_map"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            warp(image, box_map)
            wall["warp"].append(time.perf_counter() - t)
            cpu["warp"].append(time.process_time() - c)
    print(
        f"output {args.size}, grid {args.grid}, {len(calls)} frames x {args.repeat}, {where}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| step | cpu ms (mean) | wall ms (median) | wall ms (p95) |")
    print("|---|---|---|---|")
    for step in ("backward_map", "warp"):
        c, w = np.array(cpu[step]) * 1000, np.array(wall[step]) * 1000
        print(f"| {step} | {c.mean():.3f} | {np.median(w):.3f} | {np.percentile(w, 95):.3f} |")


if __name__ == "__main__":
    main()
