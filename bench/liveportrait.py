"""LivePortrait speed: per-stage milliseconds and end-to-end fps at 512 output.

    python bench/liveportrait.py                      # CPU always; CUDA variants when present
    python bench/liveportrait.py --frames 30 --compile --models-dir /path/to/models
    python bench/liveportrait.py --no-cpu --compile --cuda-graphs   # every CUDA variant

The animator is made through ``mirage.models.create_animator("liveportrait", ...)`` as
the server makes it; the reference is ``media/s0.jpg`` and the driver the frames of
``media/d0.mp4``. Weights: the real checkpoints when the weights folder has them,
otherwise the deterministic golden fill (same shapes and FLOPs, so the same speed).

Stages (profiled run, device synchronised around each): track (MediaPipe), landmarks
(the official 203-point model, when ``liveportrait/landmark.onnx`` is present), crop,
motion (M), keypoints (relative motion + stitching), warp (W), generate (G) — or render
(W + G as one CUDA graph, ``--cuda-graphs`` without ``--compile``) — readback (device →
host; absent with the device paste-back, whose paste includes the final frame's
readback), paste. "e2e" is a separate run without synchronisation: wall time per
``animate`` call from camera frame to pasted 512 output. ``--compile`` adds
torch.compile variants and ``--cuda-graphs`` CUDA-graph variants (both on CUDA only);
``--paste`` picks the paste-back (default auto: torch on CUDA, numpy on CPU). Official figure: 12.8 ms/frame
on an RTX 4090 for the network part; Mirage's target is ≤ 16 ms end to end on an H100.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.models import create_animator
from mirage.models.avatar.liveportrait.loader import LivePortraitNetworks, unavailable_reason
from mirage.models.avatar.liveportrait.networks import build_network
from tests.conftest import GOLDEN, MEDIA

STAGES = (
    "track",
    "landmarks",
    "crop",
    "motion",
    "keypoints",
    "warp",
    "generate",
    "render",
    "readback",
    "paste",
)


@dataclass(frozen=True)
class Variant:
    device: str
    half: bool
    channels_last: bool
    compile: bool = False
    cuda_graphs: bool = False
    paste: str = "auto"

    @property
    def label(self) -> str:
        bits = ["fp16" if self.half else "fp32"]
        bits += ["channels_last"] if self.channels_last else []
        bits += ["compile"] if self.compile else []
        bits += ["cuda_graphs"] if self.cuda_graphs else []
        bits += [f"{self.paste} paste"] if self.paste != "auto" else []
        return f"{self.device} {'+'.join(bits)}"


def filled_networks() -> LivePortraitNetworks:
    """The five networks with the golden deterministic fill (strict load)."""
    sys.path.insert(0, str(GOLDEN))
    import fill  # type: ignore[import-not-found]

    sys.path.remove(str(GOLDEN))
    modules: dict[str, Any] = {}
    for name in LivePortraitNetworks.__dataclass_fields__:
        manifest = json.loads((GOLDEN / "liveportrait" / f"{name}.manifest.json").read_text())
        module = build_network(name)
        fill.load_into(module, fill.fill_state(manifest["state_dict"], manifest["fill"]["seed"]))
        modules[name] = module.eval()
    return LivePortraitNetworks(**modules)


def read_media(frames: int) -> tuple[np.ndarray, list[np.ndarray]]:
    reference = cv2.cvtColor(cv2.imread(str(MEDIA / "s0.jpg")), cv2.COLOR_BGR2RGB)
    cap = cv2.VideoCapture(str(MEDIA / "d0.mp4"))
    driver = []
    while len(driver) < frames:
        ok, bgr = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        driver.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return reference, driver


def copy_networks(nets: LivePortraitNetworks, device: str) -> LivePortraitNetworks:
    import copy

    return LivePortraitNetworks(
        **{name: copy.deepcopy(module).to(device) for name, module in nets.items()}
    )


def run_variant(
    variant: Variant,
    nets: LivePortraitNetworks | None,
    models_dir: str | None,
    reference: np.ndarray,
    frames: list[np.ndarray],
    warmup: int,
    size: int,
) -> dict[str, float]:
    options: dict[str, Any] = dict(
        device=variant.device,
        half=variant.half,
        channels_last=variant.channels_last,
        compile=variant.compile,
        cuda_graphs=variant.cuda_graphs,
        paste=variant.paste,
        detector="auto",
        models_dir=models_dir,
    )
    if nets is not None:
        options["networks"] = copy_networks(nets, variant.device)
    animator = create_animator("liveportrait", **options)
    animator.set_reference(reference)
    for frame in frames[:warmup]:
        animator.animate(frame, size)
    measured = frames[warmup:]
    # end to end, no per-stage synchronisation
    animator.timer.enabled = False  # type: ignore[attr-defined]
    start = time.perf_counter()
    for frame in measured:
        animator.animate(frame, size)
    e2e = (time.perf_counter() - start) * 1000.0 / len(measured)
    # per stage, synchronised
    animator.timer.enabled = True  # type: ignore[attr-defined]
    samples: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    for frame in measured:
        animator.animate(frame, size)
        for stage, ms in animator.timings.items():  # type: ignore[attr-defined]
            samples.setdefault(stage, []).append(ms)
    animator.close()  # type: ignore[attr-defined]
    row = {s: statistics.median(v) for s, v in samples.items() if v}
    row["e2e"] = e2e
    row["fps"] = 1000.0 / e2e
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", default=None, help="weights folder (default models/)")
    parser.add_argument(
        "--frames", type=int, default=0, help="measured frames (default 3 CPU, 60 CUDA)"
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="warm-up frames (default 1 CPU, 10 CUDA)"
    )
    parser.add_argument("--size", type=int, default=512, help="output side in pixels")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile on CUDA")
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="also measure CUDA graphs (with --compile: both)"
    )
    parser.add_argument(
        "--paste", choices=("auto", "torch", "numpy"), default="auto", help="paste-back to use"
    )
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    real = unavailable_reason(args.models_dir) is None
    nets = None if real else filled_networks()
    paste = args.paste
    variants = [] if args.no_cpu else [Variant("cpu", False, False, paste=paste)]
    if torch.cuda.is_available():
        variants += [
            Variant("cuda", half=False, channels_last=False, paste=paste),
            Variant("cuda", half=True, channels_last=True, paste=paste),
        ]
        if args.compile:
            variants.append(Variant("cuda", True, True, compile=True, paste=paste))
        if args.cuda_graphs:
            variants.append(Variant("cuda", True, True, cuda_graphs=True, paste=paste))
        if args.compile and args.cuda_graphs:
            variants.append(Variant("cuda", True, True, True, cuda_graphs=True, paste=paste))

    weights = "real checkpoints" if real else "golden fill (real weights absent)"
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"# liveportrait, {args.size}x{args.size} output, weights: {weights}")
    print(f"# torch {torch.__version__}, CPU threads {torch.get_num_threads()}, GPU: {card}")
    header = ["variant", *STAGES, "total", "e2e ms", "fps"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for variant in variants:
        cuda = variant.device == "cuda"
        count = args.frames or (60 if cuda else 3)
        warm = args.warmup or (10 if cuda else 1)
        reference, frames = read_media(count + warm)
        row = run_variant(variant, nets, args.models_dir, reference, frames, warm, args.size)
        cells = [f"{row.get(s, float('nan')):.1f}" for s in (*STAGES, "total", "e2e")]
        print(f"| {variant.label} | " + " | ".join(cells) + f" | {row['fps']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
