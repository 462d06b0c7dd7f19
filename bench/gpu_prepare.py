"""Lay out, in an ignored folder of the checkout, what ``bench/gpu.py`` needs on a lent GPU.

    python bench/gpu_prepare.py [.gpu]        # here, in the project venv (needs mediapipe)

``../shared`` does not travel to the device machine and MediaPipe is not installed there,
so this copies the golden files the device check reads (the LivePortrait chain, the RVC
v2 synthesizer and RMVPE cases, and the manifests their fills need), the portrait and the
driving clip, and records MediaPipe's landmarks on them with the server's own tracker.
The device run replays those landmarks instead of tracking. Last, it prints the size of
everything that would travel (the checkout's tracked and untracked-not-ignored files plus
this folder) against the device tool's 64 MiB limit, and fails over it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import GOLDEN, MEDIA  # noqa: E402

#: What the device needs from ``shared/``, relative to it.
GOLDEN_FILES = (
    *(
        f"golden/liveportrait/{name}.manifest.json"
        for name in (
            "appearance_feature_extractor",
            "motion_extractor",
            "warping_module",
            "spade_generator",
            "stitching_retargeting_module",
            "chain",
        )
    ),
    "golden/liveportrait/chain.golden.npz",
    "golden/rvc/rvc_v2_40k.manifest.json",
    "golden/rvc/rvc_v2_40k.golden.npz",
    "golden/rvc/rmvpe.manifest.json",
    "golden/rvc/rmvpe.golden.npz",
)
REFERENCE = "media/s0.jpg"
DRIVER = "media/d0.mp4"
LANDMARKS = "landmarks.npz"
#: The device tool's limit on everything that travels with one call.
TRAVEL_LIMIT = 64 * 1024 * 1024


def travel_bytes(root: Path, carried: list[Path]) -> int:
    """Bytes of the checkout's tracked and untracked-not-ignored files plus carried paths."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    total = sum((root / name.decode()).stat().st_size for name in listed if name)
    for path in carried:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return total


def record_landmarks(reference: Path, driver: Path, out: Path) -> int:
    """MediaPipe's landmarks on the reference and on every driver frame (the server's tracker)."""
    import cv2

    from mirage.models.face.mesh import FaceMesh
    from mirage.models.face.tracker import FaceTracker

    rgb = cv2.cvtColor(cv2.imread(str(reference)), cv2.COLOR_BGR2RGB)
    with FaceMesh(static=True) as mesh:
        ref = mesh.detect(rgb)
    if ref is None:
        raise SystemExit(f"no face in {reference}")
    tracker = FaceTracker()
    points, boxes, scores = [], [], []
    cap = cv2.VideoCapture(str(driver))
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        face = tracker.track(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if face is None:  # recorded as "no face": score 0, the animator holds its frame
            points.append(np.zeros_like(ref.points))
            boxes.append((0.0, 0.0, 0.0, 0.0))
            scores.append(0.0)
        else:
            points.append(face.points)
            boxes.append(face.box)
            scores.append(face.score)
    cap.release()
    tracker.close()
    np.savez_compressed(
        out,
        reference_points=ref.points.astype(np.float32),
        reference_box=np.asarray(ref.box, dtype=np.float64),
        reference_score=np.float64(ref.score),
        points=np.asarray(points, dtype=np.float32),
        boxes=np.asarray(boxes, dtype=np.float64),
        scores=np.asarray(scores, dtype=np.float64),
    )
    return len(points)


def prepare(dest: Path) -> dict[str, int]:
    shared = GOLDEN.parent
    for rel in (*GOLDEN_FILES, REFERENCE, DRIVER):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / rel, target)
    frames = record_landmarks(MEDIA / "s0.jpg", MEDIA / "d0.mp4", dest / LANDMARKS)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    info = {"frames": frames, "folder_bytes": size, "travel_bytes": travel_bytes(ROOT, [dest])}
    (dest / "prepared.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", nargs="?", default=str(ROOT / ".gpu"), help="folder to fill")
    dest = Path(parser.parse_args().dest).resolve()
    info = prepare(dest)
    print(f"{dest}: {info['frames']} driver frames with landmarks, "
          f"{info['folder_bytes'] / 2**20:.1f} MiB; "
          f"checkout + folder travel {info['travel_bytes'] / 2**20:.1f} MiB of 64")  # fmt: skip
    if info["travel_bytes"] > TRAVEL_LIMIT:
        raise SystemExit("over the device tool's 64 MiB limit")


if __name__ == "__main__":
    main()
