"""The server's one policy for native libraries' own thread pools (process-wide).

Sessions already run in parallel: each has its own face and voice worker threads.
OpenCV by default also splits every single call (a remap, a resize) over a pool of
one thread per core. On a machine with other work on its cores that costs more than
it gives: the call waits for its slowest share, whose thread waits for a core, and
the pool's threads spin a while after each call, taking CPU from mediapipe's (the
landmark stage). ``python bench/warp_contention.py`` (docs/benchmarks.md, "Embedded
face animation: warp"): beside a busy process on a 2-core machine, warp's frame takes
2-8 ms less with OpenCV single-threaded; alone, the same.

``cv2.setNumThreads`` is process-global: ``create_app`` applies the setting once at
start-up, for every OpenCV user in the server (warp, the pass-through resize, the
LivePortrait paste), and says so in the log. Library code never calls it.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def parse_opencv_threads(value: str) -> int:
    """``MIRAGE_OPENCV_THREADS``: 1 or more, or -1 for OpenCV's own default."""
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(f"opencv_threads must be an integer, got {value!r}") from None
    check_opencv_threads(threads)
    return threads


def check_opencv_threads(threads: int) -> None:
    if threads == 0 or threads < -1:
        raise ValueError(f"opencv_threads must be >= 1, or -1 for OpenCV's default; got {threads}")


def apply_opencv_threads(threads: int) -> None:
    """Size OpenCV's pool for the whole process (1: each call on its caller's thread)."""
    check_opencv_threads(threads)
    import cv2

    cv2.setNumThreads(threads)
    log.info(
        "OpenCV threads per call: %d (process-wide; MIRAGE_OPENCV_THREADS)", cv2.getNumThreads()
    )
