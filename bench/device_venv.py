"""The device-like venv the GPU rehearsal runs in: only what the lent GPU machine has.

``tests/test_gpu_rehearsal.py`` runs ``bench/gpu.py --quick`` in it, so a package the
device lacks (aiortc, PyAV, MediaPipe, pyworld, soxr) cannot sneak into the GPU run.
``make test`` creates it before the suite starts (an install step, not test time); it is
cached under ``.rehearsal/``, keyed by its requirements, so only the first run installs.

    python bench/device_venv.py     # create it if needed, print its python
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

#: What the lent GPU machine has (device tool's KINDS.md), torch at the project's pin.
DEVICE_REQUIREMENTS = (
    "torch==2.13.0",
    "numpy>=2",
    "opencv-python-headless",
    "scipy",
    "pillow",
    "transformers",
)
#: What it lacks: the rehearsal checks none of these imports.
DEVICE_LACKS = ("aiortc", "av", "mediapipe", "pyworld", "soxr")
ROOT = Path(__file__).resolve().parents[1]


def venv_dir(root: Path = ROOT) -> Path:
    key = "\n".join((sys.version.split()[0], *DEVICE_REQUIREMENTS))
    return root / ".rehearsal" / f"venv-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def ensure(root: Path = ROOT) -> Path:
    """The cached venv's python, created (torch first: the CPU build) when missing."""
    venv = venv_dir(root)
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    if not ready.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, DEVICE_REQUIREMENTS[0]], check=True)
        subprocess.run([*pip, *DEVICE_REQUIREMENTS[1:]], check=True)
        ready.write_text("\n".join(DEVICE_REQUIREMENTS) + "\n")
    return python


if __name__ == "__main__":
    print(ensure())
