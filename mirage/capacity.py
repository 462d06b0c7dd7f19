"""How many sessions this machine should admit when nobody said (``max_sessions``).

Each session costs one software video encode and decode on the CPU whatever the
backends (aiortc #744), and with a GPU one set of model weights and activations
in GPU memory. The defaults below come from ``bench/load.py`` (docs/benchmarks.md):
measure your own machine with it and set ``MIRAGE_MAX_SESSIONS``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: A session's codecs (VP8 512²@20 fps both ways, Opus) cost ≈ 0.5 core and the default
#: warp face ≈ 0.26 more (docs/benchmarks.md): one session per core keeps the event loop
#: and the voice some headroom.
SESSIONS_PER_CORE = 1
GPU_GIB_PER_SESSION = 4.0  # LivePortrait + RVC weights and activations, with headroom


@dataclass(frozen=True)
class Device:
    cpu_cores: float
    gpu_memory_gib: float | None  # the first CUDA GPU's total memory; None: no GPU


def sessions_for(device: Device) -> int:
    """The default ``max_sessions`` for ``device``: CPU-bound without a GPU, else the
    smaller of the CPU bound and what fits in GPU memory; at least 1."""
    by_cpu = max(1, int(device.cpu_cores * SESSIONS_PER_CORE))
    if device.gpu_memory_gib is None:
        return by_cpu
    return max(1, min(by_cpu, int(device.gpu_memory_gib // GPU_GIB_PER_SESSION)))


def default_max_sessions() -> int:
    return sessions_for(detect())


@functools.cache
def detect() -> Device:
    """This machine (probed once per process: it does not change while we run)."""
    return Device(_cpu_cores(), _gpu_memory_gib())


def _cpu_cores() -> float:
    """Cores we may use: the affinity mask, capped by a cgroup v2 CPU quota."""
    cores = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return max(1.0, cores)


def _gpu_memory_gib() -> float | None:
    """Asked of ``nvidia-smi``, not torch: no CUDA context (seconds, hundreds of MB)
    is made in a process just for a default."""
    if not Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return float(out.split()[0]) / 1024  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
