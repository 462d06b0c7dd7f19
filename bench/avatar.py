"""Face animator speed: ms per frame (landmarks, motion, render, total) on one CPU core.

    python bench/avatar.py                          # warp at 512, 384 and 256
    python bench/avatar.py --frames 300 --option grid=4
    python bench/avatar.py --backend passthrough
    python bench/avatar.py --camera 640x480         # drivers padded to the browser's camera size

The process is pinned to one core (``sched_setaffinity``; mediapipe's and
OpenCV's worker threads included) and OpenCV runs single-threaded. Animators
are made through ``mirage.models.create_animator``, as the server makes them,
with the built-in default portrait, and driven by the real driving videos in
``shared/media`` (looped). Besides wall time, the table shows CPU time per frame:
on a machine shared with other jobs the wall time grows with the load, the CPU
time much less. Target for ``warp``: >= 25 fps (<= 40 ms total) at 512.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.models import MirageError, create_animator
from mirage.models.avatar.reference import default_reference
from mirage.models.registry import find, unavailable_reason

SHARED = Path(os.environ.get("MIRAGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
STAGES = ("landmarks", "motion", "render")


@dataclass(frozen=True)
class Result:
    size: int
    ms: dict[str, float]  # stage → median ms; "total" → median wall ms
    p95: float
    cpu_ms: float

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms["total"] if self.ms["total"] > 0 else float("inf")


def one_core() -> str:
    """Pin this process (and the threads it starts later) to one core."""
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "all cores (no sched_setaffinity here)"


def driver_frames(limit: int = 400, camera: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The driving videos' frames (RGB); with ``camera`` (w, h), each is cut or padded
    (edge pixels repeated) to that size, centred, as a webcam frame of the same face."""
    frames: list[np.ndarray] = []
    for name in ("d0.mp4", "d19.mp4"):
        cap = cv2.VideoCapture(str(SHARED / "media" / name))
        while len(frames) < limit:
            ok, frame = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            frames.append(rgb if camera is None else _fit(rgb, *camera))
        cap.release()
    if not frames:
        raise SystemExit(f"no driving videos under {SHARED / 'media'} (set MIRAGE_SHARED)")
    return frames


def _fit(image: np.ndarray, w: int, h: int) -> np.ndarray:
    ih, iw = image.shape[:2]
    y0, x0 = max((ih - h) // 2, 0), max((iw - w) // 2, 0)
    image = image[y0 : y0 + h, x0 : x0 + w]
    ih, iw = image.shape[:2]
    top, left = (h - ih) // 2, (w - iw) // 2
    return cv2.copyMakeBorder(image, top, h - ih - top, left, w - iw - left, cv2.BORDER_REPLICATE)


def measure(animator: Any, frames: list[np.ndarray], size: int, count: int) -> Result:
    for frame in frames[:10]:  # warm up: graph start, neutral pose, per-size caches
        animator.animate(frame, size)
    stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    cpu0 = time.process_time()
    for i in range(count):
        t0 = time.perf_counter()
        animator.animate(frames[(10 + i) % len(frames)], size)
        stages["total"].append(time.perf_counter() - t0)
        for stage, seconds in animator.stage_seconds.items():
            stages.setdefault(stage, []).append(seconds)
    cpu = (time.process_time() - cpu0) / count
    ms = {k: 1000 * float(np.median(v)) for k, v in stages.items() if v}
    return Result(size, ms, 1000 * float(np.percentile(stages["total"], 95)), 1000 * cpu)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            options[key] = int(value)
        except ValueError:
            try:
                options[key] = float(value)
            except ValueError:
                options[key] = value
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="warp")
    parser.add_argument("--sizes", default="512,384,256")
    parser.add_argument("--frames", type=int, default=200, help="timed frames per size")
    parser.add_argument("--option", action="append", default=[], help="key=value, repeatable")
    parser.add_argument("--camera", default="", help="WxH: pad/cut drivers to this size")
    args = parser.parse_args()
    camera = None
    if args.camera:
        cw, _, ch = args.camera.partition("x")
        camera = (int(cw), int(ch))

    reason = unavailable_reason(find("face", args.backend))
    if reason:
        raise SystemExit(f"{args.backend} cannot run here: {reason}")
    where = one_core()
    frames = driver_frames(camera=camera)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"backend {args.backend} {parse_options(args.option) or ''}; {where}; "
        f"{len(frames)} driver frames {frames[0].shape[1]}x{frames[0].shape[0]}; load average {load:.1f} on {os.cpu_count()} cpus"
    )
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        try:
            animator = create_animator(args.backend, **parse_options(args.option))
        except MirageError as exc:
            raise SystemExit(f"cannot make {args.backend}: {exc}") from exc
        animator.set_reference(default_reference())
        results.append(measure(animator, frames, size, args.frames))
        animator.close()
    header = f"{'size':>5} | " + " | ".join(f"{s:>9}" for s in STAGES)
    print(f"{header} | {'total ms':>8} | {'p95 ms':>6} | {'cpu ms':>6} | {'fps':>5}")
    print("-" * (len(header) + 44))
    for r in results:
        cells = " | ".join(f"{r.ms.get(s, float('nan')):9.2f}" for s in STAGES)
        print(
            f"{r.size:>5} | {cells} | {r.ms['total']:8.2f} | {r.p95:6.2f} | "
            f"{r.cpu_ms:6.2f} | {r.fps:5.1f}"
        )


if __name__ == "__main__":
    main()
