"""Why warp is slower in the server than alone: its frame time beside CPU and GIL contention.

    python bench/warp_contention.py [--frames 480] [--duty 0.3]

The warp animator runs at 30 fps on 640×480 webcam-sized frames (the shared driving
videos, padded as ``bench/avatar.py --camera 640x480`` does), unpinned, as in the
server, under four kinds of contention, one after the other:

- none;
- a CPU hog: another process spinning (a second busy program on a 2-core machine,
  as Chromium is beside the server in ``bench/browser_latency.py``);
- a GIL holder: a Python thread in this process that runs pure Python for ``--duty``
  of every 10 ms (the server's event loop, aiortc and the voice worker together hold
  the GIL about that share of the time in the browser benchmark);
- both.

Within each, the settings a server could choose alternate frame by frame, so that
the machine's drifting load hits them alike: OpenCV's thread pool (its default, one
thread per core, or ``cv2.setNumThreads(1)``) × the interpreter's switch interval
(5 ms, the default, or 1 ms: how long a thread that wants the GIL waits before the
holder is made to drop it). Prints one Markdown table: median and p95 wall ms per
frame, and the landmark and render stages' medians.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from avatar import driver_frames

from mirage.models import create_animator
from mirage.models.avatar.reference import default_reference

SETTINGS = [(0, 0.005), (1, 0.005), (0, 0.001), (1, 0.001)]  # (cv2 threads, switch s)


class GilHolder:
    """A thread that spins in pure Python for ``duty`` of every 10 ms."""

    def __init__(self, duty: float) -> None:
        self.duty, self._stop = duty, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.01 * self.duty:
                pass
            time.sleep(0.01 * (1 - self.duty))

    def __enter__(self) -> GilHolder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(animator: object, frames: list[np.ndarray], count: int) -> dict:
    """``count`` frames at 30 fps, the settings in turn; per setting: walls and stages."""
    default_threads = cv2.getNumThreads()
    out: dict = {s: {"wall": [], "landmarks": [], "render": []} for s in SETTINGS}
    next_at = time.perf_counter()
    for i in range(count):
        setting = SETTINGS[i % len(SETTINGS)]
        cv2.setNumThreads(setting[0] or default_threads)
        sys.setswitchinterval(setting[1])
        next_at += 1 / 30
        t0 = time.perf_counter()
        animator.animate(frames[i % len(frames)], 512)  # type: ignore[attr-defined]
        out[setting]["wall"].append(1000 * (time.perf_counter() - t0))
        for stage in ("landmarks", "render"):
            seconds = animator.stage_seconds.get(stage)  # type: ignore[attr-defined]
            if seconds is not None:
                out[setting][stage].append(1000 * seconds)
        wait = next_at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            next_at = time.perf_counter()
    cv2.setNumThreads(default_threads)
    sys.setswitchinterval(0.005)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=480, help="frames per contention case")
    parser.add_argument("--duty", type=float, default=0.3, help="the GIL holder's share")
    args = parser.parse_args()
    frames = driver_frames(limit=200, camera=(640, 480))
    animator = create_animator("warp")
    animator.set_reference(default_reference())
    for frame in frames[:10]:
        animator.animate(frame, 512)
    threads = cv2.getNumThreads()
    print(f"<!-- load average at start {os.getloadavg()}, {os.cpu_count()} cpus -->")
    print(
        "| contention | OpenCV threads | switch interval | wall p50 ms | wall p95 ms "
        "| landmarks p50 ms | render p50 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, hog, gil in (
        ("none", False, False),
        ("CPU hog (another process)", True, False),
        (f"GIL holder ({args.duty:.0%} of the time)", False, True),
        ("both", True, True),
    ):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
        try:
            time.sleep(0.3)
            if gil:
                with GilHolder(args.duty):
                    got = run(animator, frames, args.frames)
            else:
                got = run(animator, frames, args.frames)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        for setting in SETTINGS:
            r = got[setting]
            wall = np.array(r["wall"])
            print(
                f"| {name} | {setting[0] or f'{threads} (default)'} | {setting[1] * 1000:.0f} ms "
                f"| {np.median(wall):.1f} | {np.percentile(wall, 95):.1f} "
                f"| {np.median(r['landmarks']):.1f} | {np.median(r['render']):.1f} |"
            )
    print(f"<!-- load average at end {os.getloadavg()} -->")


if __name__ == "__main__":
    main()
