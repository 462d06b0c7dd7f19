"""The ``warp`` face backend: landmark-driven mesh warp of the reference, CPU only.

Registered as ``mirage.models.avatar.warp.animator:WarpAnimator``; its availability
check is ``unavailable_reason`` here, which imports nothing, so asking whether the
backend can run does not load mediapipe.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: Files of the mediapipe wheel the backend runs on (checked without importing it).
_MEDIAPIPE_FILES = (
    "python/solutions/face_mesh.py",
    "modules/face_landmark/face_landmark_with_attention.tflite",
    "modules/face_detection/face_detection_short_range.tflite",
)


def unavailable_reason(models_dir: str | None = None) -> str | None:
    """``None``: the backend needs no weights, only packages that ship its models.

    ``models_dir`` is accepted for the common check signature and not used.
    """
    for package, why in (
        ("mediapipe", "mediapipe==0.10.21 (ships the face mesh model)"),
        ("cv2", "opencv-contrib-python"),
        ("scipy", "scipy"),
        ("skimage", "scikit-image (the default portrait)"),
    ):
        if importlib.util.find_spec(package) is None:
            return f"package {package!r} is not installed; install {why}"
    spec = importlib.util.find_spec("mediapipe")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for needed in _MEDIAPIPE_FILES:
        if not any((root / needed).is_file() for root in roots):
            return (
                f"mediapipe lacks {needed} (releases after 0.10.21 ship no face mesh model); "
                "install mediapipe==0.10.21"
            )
    return None
