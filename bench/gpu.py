"""GPU readiness: golden checks and speed of LivePortrait and RVC in one command.

    python bench/gpu_prepare.py                    # here, once: fills .gpu/ (needs mediapipe)
    python3 bench/gpu.py --data .gpu --out $OUT    # on the lent GPU (carry .gpu)
    python bench/gpu.py --data .gpu --out /tmp/g --quick   # CPU rehearsal, a few frames

Needs only torch, numpy (1 or 2), opencv-python-headless and transformers: no aiortc,
PyAV, MediaPipe, pyworld or soxr. Weights are the golden deterministic fill (the
in-project copy ``gpu_fill.py``; same shapes and FLOPs as the real checkpoints, so the
same speed). Steps, each written to ``OUT/gpu.md`` and ``OUT/gpu.json`` as soon as it
is done, so a run stopped at its limit still leaves what it measured:

1. fill: every network filled, its checksum against the manifest's.
2. golden: on the device, fp32 (TF32 off) against the official outputs within the golden
   tolerances (LivePortrait chain and RMVPE salience 1e-3, RVC synthesizer 1e-4), then
   fp16 autocast within ``LOWP_REL_L2`` relative L2 error (the chain on CUDA only).
3. liveportrait: the ``liveportrait`` animator at 512 with recorded MediaPipe landmarks
   replayed in place of the tracker: end-to-end ms per frame (driver frame → pasted 512
   output on the host; median and p95 over ``--frames``, warm-up excluded), then a
   second pass with the device synchronised around each stage for per-stage medians.
   Variants: eager fp32, fp16 + channels_last, + CUDA graphs, + torch.compile,
   + torch.compile + CUDA graphs (compile variants last, within ``--budget-s``).
4. sessions: GPU memory per session (peak allocated over one session's set-up and
   frames, its own copy of the weights included, as each server session loads its own)
   and sessions that fit at 20 fps: K sessions driven round-robin give an aggregate fps
   (compute bound), memory gives another bound; the single-session e2e gives a third.
5. rvc: ms per block (100 and 160 ms) of the converter's model stages at its window
   geometry: RMVPE on the newest audio, HuBERT over the window, synthesizer decode of
   the chunk; fp32 and fp16. Resampling, SOLA and loudness (CPU, numpy/soxr) are not in
   it; ``bench/rvc.py`` times the whole converter.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_fill

from mirage.models.avatar.liveportrait import keypoints as kpt
from mirage.models.avatar.liveportrait.animator import LivePortraitAnimator
from mirage.models.avatar.liveportrait.loader import LivePortraitNetworks
from mirage.models.avatar.liveportrait.networks import build_network
from mirage.models.face.mesh import FaceLandmarks
from mirage.models.face.tracker import FaceTracker, TrackerConfig
from mirage.models.voice.rvc.build import build_network as build_rvc
from mirage.models.voice.rvc.converter import WARMUP_FRAMES, StreamLayout
from mirage.models.voice.rvc.hubert import load_content_encoder
from mirage.models.voice.rvc.pitch import (
    HOP,
    RATE,
    StreamingPitch,
    coarse_pitch,
)
from mirage.models.voice.rvc.rmvpe import decode

#: fp16-autocast tolerances, relative L2 error ‖out − ref‖ / ‖ref‖, 3× what fp16 autocast
#: measured on the CPU (chain 0.016, synthesizer 0.0035, RMVPE 0.0079; bf16 gave 0.10,
#: 0.03, 0.05, about 8× more, as its 3 fewer mantissa bits predict).
LOWP_REL_L2 = {"chain": 5e-2, "synthesizer": 1e-2, "rmvpe": 2.5e-2}
#: fp32 tolerances from shared/golden/README.md: (rtol, atol).
CHAIN_TOL = (1e-3, 1e-3)
SINGLE_TOL = (1e-4, 1e-4)
LP_NETWORKS = tuple(LivePortraitNetworks.__dataclass_fields__)
#: Modules the lent machine does not have: none may be imported on the way.
DEVICE_LACKS = ("aiortc", "av", "mediapipe", "pyworld", "soxr", "faiss")
SIZE = 512
FPS_TARGET = 20.0


# --------------------------------------------------------------------------- report


@dataclass
class Report:
    """Rows per section, rewritten as Markdown and JSON after every addition."""

    out: Path
    meta: dict[str, Any]
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, section: str, row: dict[str, Any]) -> None:
        self.sections.setdefault(section, []).append(row)
        self.write()
        cells = ", ".join(f"{k}={_cell(v)}" for k, v in row.items())
        print(f"[{section}] {cells}", flush=True)

    def markdown(self) -> str:
        lines = [f"# GPU readiness: {self.meta.get('device_name', '?')}", ""]
        lines += [f"- {k}: {_cell(v)}" for k, v in self.meta.items()]
        for section, rows in self.sections.items():
            keys: list[str] = []
            for row in rows:
                keys += [k for k in row if k not in keys]
            lines += ["", f"## {section}", "", "| " + " | ".join(keys) + " |"]
            lines.append("|" + "---|" * len(keys))
            lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in rows]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu.md").write_text(self.markdown())
        data = {"meta": self.meta, "sections": self.sections}
        (self.out / "gpu.json").write_text(json.dumps(data, indent=1) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 0.01 and value else f"{value:.2f}"
    return str(value)


def attempt(
    report: Report, section: str, label: dict[str, Any], run: Callable[..., Any], *args: Any
) -> Any:
    """``run(*args)``; an error becomes a row of its own and the run goes on (one device try)."""
    try:
        return run(*args)
    except Exception as exc:
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        report.add(section, {**label, "note": f"ERROR {type(exc).__name__}: {first}"})
        report.errors.append(f"{section} {label}")
        return None


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(median, p95) of a list of milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered), p95


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """fp32 that is fp32 for the golden checks (TF32 convs would miss 1e-4); the timed
    runs keep PyTorch's defaults, as the server does (TF32 convolutions on)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(device: torch.device, lowp: torch.dtype | None) -> Any:
    if lowp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=lowp)


# --------------------------------------------------------------------------- weights


def manifest(data: Path, family: str, name: str) -> dict[str, Any]:
    text = (data / "golden" / family / f"{name}.manifest.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def filled(data: Path, family: str, name: str, report: Report) -> torch.nn.Module:
    """The network filled with the golden weights; its checksum goes in the report."""
    start = time.perf_counter()
    man = manifest(data, family, name)
    arrays = gpu_fill.fill_state(man["state_dict"], man["fill"]["seed"])
    ok = gpu_fill.checksum_ok(arrays, man["fill"]["checksum"])
    module = build_network(name) if family == "liveportrait" else build_rvc(name)
    gpu_fill.load_into(module, arrays)
    params = sum(p.numel() for p in module.parameters())
    seconds = time.perf_counter() - start
    report.add("fill", {"network": name, "params": params, "checksum": "ok" if ok else "FAIL",
                        "s": seconds})  # fmt: skip
    if not ok:
        raise SystemExit(f"{name}: the fill does not reproduce the manifest's checksum")
    return module.eval()


# --------------------------------------------------------------------------- golden


def compare(got: torch.Tensor, ref: np.ndarray, tol: tuple[float, float] | float) -> dict[str, Any]:
    """Errors of ``got`` against ``ref``; pass by allclose(rtol, atol), or by a rel L2 bound."""
    mine = got.detach().float().cpu().numpy().astype(np.float64)
    want = np.asarray(ref, dtype=np.float64)
    if mine.shape != want.shape:
        return {"max_abs": float("nan"), "rel_l2": float("nan"), "tol": "shape",
                "pass": f"FAIL shape {mine.shape} vs {want.shape}"}  # fmt: skip
    diff = np.abs(mine - want)
    rel = float(np.linalg.norm(mine - want)) / max(float(np.linalg.norm(want)), 1e-30)
    finite = bool(np.isfinite(mine).all())
    if isinstance(tol, float):
        ok, text = finite and rel <= tol, f"rel_l2 <= {tol:g}"
    else:
        rtol, atol = tol
        ok = finite and bool(np.all(diff <= atol + rtol * np.abs(want)))
        text = f"rtol {rtol:g}, atol {atol:g}"
    return {"max_abs": float(diff.max()), "rel_l2": rel, "tol": text,
            "pass": "ok" if ok else "FAIL"}  # fmt: skip


def check_chain(
    nets: LivePortraitNetworks, npz: Any, device: torch.device, lowp: torch.dtype | None
) -> torch.Tensor:
    """The official chain (source + driving image → image), as the golden README lists it;
    in low precision only the networks run under autocast, as the pipeline runs them."""
    src = torch.from_numpy(npz["chain0/in/source_image"]).to(device)
    drv = torch.from_numpy(npz["chain0/in/driving_image"]).to(device)
    with torch.inference_mode():
        with autocast(device, lowp):
            s_raw, d_raw = nets.motion_extractor(image=src), nets.motion_extractor(image=drv)
            f_s = nets.appearance_feature_extractor(source_image=src)["feature_3d"].float()
        s_info, d_info = kpt.KeypointInfo.from_motion(s_raw), kpt.KeypointInfo.from_motion(d_raw)
        x_s, x_d = kpt.transform_keypoints(s_info), kpt.transform_keypoints(d_info)
        stitching: Any = nets.stitching_retargeting_module
        x_d = kpt.stitch(stitching.stitching, x_s, x_d)
        with autocast(device, lowp):
            warped = nets.warping_module(f_s, kp_driving=x_d, kp_source=x_s)
            image: torch.Tensor = nets.spade_generator(feature=warped["out"])["image"]
    return image


def cases(golden: dict[str, np.ndarray], low: torch.dtype | None, cuda: bool) -> list[str]:
    """The golden cases to check: all of them, but only the first in low precision on a
    CPU, where float16 is emulated (the synthesizer's takes ~90 s a case there) and one
    case already rehearses the autocast path."""
    every = sorted({k.split("/")[0] for k in golden if k.count("/") == 2})
    return every if low is None or cuda else every[:1]


CPU_LOWP_FRAMES = 12  # the synthesizer's frames a CPU rehearsal runs in float16


def synth_head(args: dict[str, torch.Tensor], frames: int) -> dict[str, torch.Tensor]:
    """The synthesizer's inputs cut to their first ``frames`` frames (time is axis 1 of
    phone, pitch and nsff0; phone_lengths says how many are valid)."""
    cut = {n: t[:, :frames] if n in ("phone", "pitch", "nsff0") else t for n, t in args.items()}
    cut["phone_lengths"] = torch.clamp(args["phone_lengths"], max=frames)
    return cut


def run_golden(
    data: Path,
    nets: LivePortraitNetworks,
    synth: torch.nn.Module,
    rmvpe: torch.nn.Module,
    device: torch.device,
    lowp: torch.dtype,
    report: Report,
) -> None:
    chain = np.load(data / "golden" / "liveportrait" / "chain.golden.npz")
    with np.load(data / "golden" / "rvc" / "rvc_v2_40k.golden.npz") as f:
        rvc = {k: f[k] for k in f.files}
    with np.load(data / "golden" / "rvc" / "rmvpe.golden.npz") as f:
        pitch = {k: f[k] for k in f.files}
    synth_inputs = [e["name"] for e in manifest(data, "rvc", "rvc_v2_40k")["io"]["inputs"]]
    on_device = LivePortraitNetworks(**{n: m.to(device) for n, m in nets.items()})
    synth.to(device)
    rmvpe.to(device)
    cuda = device.type == "cuda"
    for label, low in (("fp32", None), (str(lowp).replace("torch.", ""), lowp)):
        start = time.perf_counter()
        if low is None or cuda:  # a CPU rehearsal skips the chain in fp16 (a minute there)
            image = check_chain(on_device, chain, device, low)
            row = compare(
                image, chain["chain0/out/image"], CHAIN_TOL if low is None else LOWP_REL_L2["chain"]
            )
            report.add("golden", {"check": "liveportrait chain image", "precision": label,
                                  **row, "s": time.perf_counter() - start})  # fmt: skip
        for case in cases(rvc, low, cuda):
            start = time.perf_counter()
            args = {n: torch.from_numpy(rvc[f"{case}/in/{n}"]).to(device) for n in synth_inputs}
            check, want = f"rvc v2 synthesizer audio {case}", rvc[f"{case}/out/audio"]
            if low is not None and not cuda:
                # Emulated float16 took 72 s for this case's 100 frames on a 2-core CPU:
                # a CPU rehearsal runs the autocast path on its first frames, against fp32.
                args = synth_head(args, CPU_LOWP_FRAMES)
                with torch.inference_mode():
                    want = synth(**args)["audio"].cpu().numpy()
                check += f" (first {CPU_LOWP_FRAMES} frames, against fp32)"
            with torch.inference_mode(), autocast(device, low):
                audio = synth(**args)["audio"]
            row = compare(audio, want, SINGLE_TOL if low is None else LOWP_REL_L2["synthesizer"])
            report.add("golden", {"check": check, "precision": label,
                                  **row, "s": time.perf_counter() - start})  # fmt: skip
        for case in cases(pitch, low, cuda):
            start = time.perf_counter()
            audio = torch.from_numpy(pitch[f"{case}/in/audio"]).to(device)
            with torch.inference_mode():
                hidden = salience(rmvpe, audio, low)
            row = compare(
                hidden,
                pitch[f"{case}/out/hidden"],
                CHAIN_TOL if low is None else LOWP_REL_L2["rmvpe"],
            )
            report.add("golden", {"check": f"rmvpe salience {case}", "precision": label, **row,
                                  "s": time.perf_counter() - start})  # fmt: skip
    for module in (*on_device.__dict__.values(), synth, rmvpe):
        module.to("cpu")


# --------------------------------------------------------------------------- liveportrait


class Replay:
    """Recorded landmarks handed out in order, as a ``Landmarker`` (one per sequence)."""

    def __init__(self, faces: list[FaceLandmarks | None]) -> None:
        self.faces = faces
        self.index = 0

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        face = self.faces[self.index % len(self.faces)]
        self.index += 1
        return face

    def close(self) -> None:
        pass


@dataclass
class Media:
    reference: np.ndarray
    reference_face: FaceLandmarks
    frames: list[np.ndarray]
    faces: list[FaceLandmarks | None]

    @classmethod
    def load(cls, data: Path) -> Media:
        rgb = cv2.cvtColor(cv2.imread(str(data / "media" / "s0.jpg")), cv2.COLOR_BGR2RGB)
        marks = np.load(data / "landmarks.npz")
        ref = FaceLandmarks(marks["reference_points"], tuple(marks["reference_box"].tolist()),
                            float(marks["reference_score"]))  # fmt: skip
        frames = []
        cap = cv2.VideoCapture(str(data / "media" / "d0.mp4"))
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cap.release()
        recorded = len(marks["points"])
        if not frames or abs(len(frames) - recorded) > 2:  # another FFmpeg may drop one
            raise ValueError(f"d0.mp4 gave {len(frames)} frames, landmarks.npz has {recorded}")
        count = min(len(frames), recorded)
        faces: list[FaceLandmarks | None] = [
            None if score <= 0 else FaceLandmarks(points, tuple(box.tolist()), float(score))
            for points, box, score in zip(
                marks["points"][:count], marks["boxes"][:count], marks["scores"][:count],
                strict=True,
            )
        ]  # fmt: skip
        return cls(rgb, ref, frames[:count], faces)


@dataclass(frozen=True)
class Variant:
    half: bool
    channels_last: bool
    compile: bool = False
    cuda_graphs: bool = False

    @property
    def label(self) -> str:
        bits = ["fp16" if self.half else "fp32"]
        bits += ["channels_last"] if self.channels_last else []
        bits += ["compile"] if self.compile else []
        bits += ["cuda_graphs"] if self.cuda_graphs else []
        return " + ".join(bits) + ("" if self.compile or self.half else " eager")


EAGER = (Variant(False, False), Variant(True, True), Variant(True, True, cuda_graphs=True))
COMPILED = (Variant(True, True, compile=True), Variant(True, True, True, cuda_graphs=True))
STAGES = ("crop", "motion", "keypoints", "warp", "generate", "render", "paste")


def make_animator(
    variant: Variant, nets: LivePortraitNetworks, media: Media, device: torch.device
) -> LivePortraitAnimator:
    """One session: its own copy of the weights, the recorded landmarks for a tracker."""
    own = LivePortraitNetworks(**{n: copy.deepcopy(m).to(device) for n, m in nets.items()})
    tracker = FaceTracker(TrackerConfig(detect_every=1, detector="mesh"),
                          landmarker=Replay(media.faces), detector=None)  # fmt: skip
    animator = LivePortraitAnimator(
        device=str(device), half=variant.half, channels_last=variant.channels_last,
        compile=variant.compile, cuda_graphs=variant.cuda_graphs, landmarks="mediapipe",
        networks=own, tracker=tracker, reference_landmarker=Replay([media.reference_face]),
    )  # fmt: skip
    animator.set_reference(media.reference)
    return animator


def drive(
    animator: LivePortraitAnimator,
    media: Media,
    count: int,
    start: int,
    stages: dict[str, list[float]] | None = None,
) -> list[float]:
    """ms per ``animate`` call over ``count`` frames from frame ``start`` (output on host);
    each frame's stage timings go to ``stages`` when given."""
    times = []
    for i in range(start, start + count):
        t0 = time.perf_counter()
        animator.animate(media.frames[i % len(media.frames)], SIZE)
        times.append((time.perf_counter() - t0) * 1000.0)
        if stages is not None:
            for stage, ms in animator.timings.items():
                stages.setdefault(stage, []).append(ms)
    return times


def run_variant(
    variant: Variant,
    nets: LivePortraitNetworks,
    media: Media,
    device: torch.device,
    frames: int,
    warmup: int,
) -> dict[str, Any]:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    animator = make_animator(variant, nets, media, device)
    warm = drive(animator, media, warmup, 0)
    setup_s = time.perf_counter() - start
    stages: dict[str, list[float]] = {}
    if cuda:  # the stages in a pass of their own: their CUDA syncs would slow e2e
        e2e = drive(animator, media, frames, warmup)
        animator.timer.enabled = True
        drive(animator, media, frames, warmup + frames, stages)
    else:  # timing syncs nothing on a CPU: one pass (a rehearsal's 512 frame takes ~17 s)
        animator.timer.enabled = True
        e2e = drive(animator, media, frames, warmup, stages)
    animator.timer.enabled = False
    median, p95 = percentiles(e2e)
    row: dict[str, Any] = {"variant": variant.label}
    row.update({s: statistics.median(stages[s]) if s in stages else float("nan") for s in STAGES})
    row.update({"e2e median ms": median, "e2e p95 ms": p95, "fps": 1000.0 / median,
                "frames": frames, "warm-up s": setup_s, "first frame ms": (warm or e2e)[0]})  # fmt: skip
    if cuda:
        row["GPU MiB/session"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    fallbacks = [
        f"{c.name}: {c.fallback_reason}"
        for c in (animator.pipeline._warp, animator.pipeline._generate)
        if getattr(c, "fallback_reason", None)
    ]
    row["note"] = "; ".join(fallbacks) or ("" if not variant.compile else "compiled")
    animator.close()
    del animator
    return row


def run_sessions(
    variant: Variant,
    nets: LivePortraitNetworks,
    media: Media,
    device: torch.device,
    count: int,
    frames: int,
    warmup: int,
    single_e2e_ms: float,
) -> dict[str, Any]:
    """``count`` sessions driven round-robin; capacity at 20 fps by compute and by memory."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    sessions = [make_animator(variant, nets, media, device) for _ in range(count)]
    for s in sessions:
        drive(s, media, warmup, 0)
    start = time.perf_counter()
    for i in range(frames):
        for s in sessions:
            s.animate(media.frames[(warmup + i) % len(media.frames)], SIZE)
    sync(device)
    wall = time.perf_counter() - start
    aggregate = count * frames / wall
    row: dict[str, Any] = {"variant": variant.label, "sessions driven": count,
                           "aggregate fps": aggregate,
                           "fit at 20 fps (compute)": int(aggregate // FPS_TARGET),
                           "fit at 20 fps (1-session e2e)": int(1000.0 / single_e2e_ms // FPS_TARGET)}  # fmt: skip
    if cuda:
        per = (torch.cuda.max_memory_allocated(device) - base) / count
        total = torch.cuda.get_device_properties(device).total_memory
        row["GPU MiB/session"] = per / 2**20
        row["fit (memory, 90%)"] = int(0.9 * (total - base) // per)
        row["fit at 20 fps"] = min(row["fit at 20 fps (compute)"], row["fit (memory, 90%)"])
    else:
        row["fit at 20 fps"] = row["fit at 20 fps (compute)"]
    for s in sessions:
        s.close()
    return row


# --------------------------------------------------------------------------- rvc


def salience(model: Any, audio: torch.Tensor, lowp: torch.dtype | None) -> torch.Tensor:
    """``Rmvpe.forward``'s salience with the mel front end kept in fp32 (as upstream's
    half-precision path keeps it) and only the network under autocast."""
    mel = model.mel(audio)
    frames = mel.shape[-1]
    with autocast(audio.device, lowp):
        hidden: torch.Tensor = model.salience(torch.nn.functional.pad(mel, (0, -frames % 32)))
    return hidden[:, :frames]


class RmvpeTracker:
    """The filled RMVPE as the converter's pitch tracker, optionally under autocast."""

    name = "rmvpe"

    def __init__(self, model: Any, device: torch.device, lowp: torch.dtype | None) -> None:
        self.model, self.device, self.lowp = model, device, lowp

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray) -> np.ndarray:
        wav = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        hidden = salience(self.model, wav.to(self.device), self.lowp)
        f0 = decode(hidden[0].float().cpu().numpy(), self.model.threshold)
        frames = len(audio) // HOP + 1
        f0 = np.asarray(f0, dtype=np.float64)[:frames]
        return np.pad(f0, (0, frames - len(f0)))

    def segment(self, samples: int) -> int:
        return 5120 * ((samples - 1) // 5120 + 1) - HOP


def voice(seconds: float) -> np.ndarray:
    """A gliding harmonic voice with pauses and breath noise (deterministic)."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(0.25 / k * np.sin(k * phase) for k in range(1, 12))
    x = x * (np.sin(2 * np.pi * 1.5 * t) > -0.6)
    x = x + 0.01 * np.random.default_rng(0).normal(size=len(t))
    return np.asarray(x, dtype=np.float32)


def hubert_file(root: Path) -> Path:
    """A full-size HuBERT base in fairseq's layout (bench/rvc.py's seeded weights)."""
    from rvc import fairseq_hubert_base  # bench/rvc.py

    path = root / "hubert_base.pt"
    cfg = {"model": {"conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
                     "encoder_attention_heads": 12}}  # fmt: skip
    torch.save({"model": fairseq_hubert_base(), "cfg": cfg}, path)
    return path


def run_rvc(
    encoder: torch.nn.Module,
    synth: Any,
    rmvpe: torch.nn.Module,
    device: torch.device,
    block_ms: float,
    lowp: torch.dtype | None,
    blocks: int,
    warmup: int,
) -> dict[str, Any]:
    lay = StreamLayout.from_ms(block_ms, 40.0, 10.0, 1.0)
    pitch = StreamingPitch(RmvpeTracker(rmvpe, device, lowp), lay.window)
    wav = np.zeros(lay.window * HOP, dtype=np.float32)
    audio = voice((blocks + warmup) * lay.block * HOP / RATE + 0.5)
    sid = torch.tensor([0], device=device)
    head, length = lay.context - WARMUP_FRAMES, lay.chunk + WARMUP_FRAMES
    stage_ms: dict[str, list[float]] = {"rmvpe": [], "hubert": [], "synthesizer": []}
    totals = []

    @contextlib.contextmanager
    def stage(name: str, keep: bool) -> Iterator[None]:
        sync(device)
        t0 = time.perf_counter()
        yield
        sync(device)
        if keep:
            stage_ms[name].append((time.perf_counter() - t0) * 1000.0)

    for i in range(blocks + warmup):
        keep = i >= warmup
        block = audio[i * lay.block * HOP : (i + 1) * lay.block * HOP]
        t0 = time.perf_counter()
        wav = np.concatenate((wav[len(block) :], block))
        with stage("rmvpe", keep):
            f0 = pitch.update(wav, lay.block)
        with stage("hubert", keep), torch.inference_mode(), autocast(device, lowp):
            feats = encoder(torch.from_numpy(wav)[None].to(device))[0]
        with stage("synthesizer", keep), torch.inference_mode(), autocast(device, lowp):
            feats = feats.repeat_interleave(2, dim=0)
            frames = len(wav) // HOP
            pad = frames - feats.shape[0]
            if pad > 0:
                feats = torch.cat((feats, feats[-1:].expand(pad, -1)))
            phone = feats[None, :frames]
            coarse = torch.from_numpy(coarse_pitch(f0))[None].to(device)
            nsff0 = torch.from_numpy(f0.astype(np.float32))[None].to(device)
            lengths = torch.tensor([frames], device=device)
            out = synth.infer(phone, lengths, coarse, nsff0, sid, head, length)[0]
            out.float().cpu()
        if keep:
            totals.append((time.perf_counter() - t0) * 1000.0)
    median, p95 = percentiles(totals)
    row: dict[str, Any] = {"precision": "fp32" if lowp is None else str(lowp)[6:],
                           "block ms": block_ms, "window ms": lay.window * 10}  # fmt: skip
    row.update({f"{k} ms": statistics.median(v) for k, v in stage_ms.items()})
    row.update({"block median ms": median, "block p95 ms": p95, "RTF": median / block_ms,
                "blocks": blocks})  # fmt: skip
    return row


# --------------------------------------------------------------------------- main


def environment(device: torch.device) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "cpu threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        meta["device_name"] = props.name
        meta["capability"] = f"{props.major}.{props.minor}"
        meta["GPU MiB"] = props.total_memory // 2**20
        meta["cuda"] = torch.version.cuda
    else:
        meta["device_name"] = f"CPU ({platform.processor() or platform.machine()})"
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".gpu"),
                        help="folder that bench/gpu_prepare.py filled")  # fmt: skip
    parser.add_argument("--out", required=True, help="folder for gpu.md and gpu.json")
    parser.add_argument("--quick", action="store_true", help="a few frames and blocks")
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--frames", type=int, default=0, help="measured frames (200; quick 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="no compile variant starts after this many seconds")  # fmt: skip
    parser.add_argument("--compile-s", type=float, default=150.0,
                        help="seconds one compile variant is assumed to need")  # fmt: skip
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    data = Path(args.data)
    if not (data / "landmarks.npz").is_file():
        raise SystemExit(f"{data} holds no landmarks.npz: run bench/gpu_prepare.py first")
    frames = args.frames or (1 if args.quick else 200)
    # a CPU rehearsal skips warm-up: a 512 frame costs ~10 s there
    warmup = (1 if cuda else 0) if args.quick else 20
    lowp = torch.float16
    meta = environment(device)
    meta.update({"frames": frames, "warm-up frames": warmup, "quick": args.quick,
                 "fp16 tolerance (rel L2)": LOWP_REL_L2})  # fmt: skip
    report = Report(Path(args.out), meta)
    report.write()
    print(f"# gpu readiness on {meta['device_name']}, torch {torch.__version__}", flush=True)

    nets = LivePortraitNetworks(
        **{name: filled(data, "liveportrait", name, report) for name in LP_NETWORKS}
    )
    synth = filled(data, "rvc", "rvc_v2_40k", report)
    rmvpe = filled(data, "rvc", "rmvpe", report)
    with no_tf32():
        attempt(report, "golden", {"check": "all"},
                run_golden, data, nets, synth, rmvpe, device, lowp, report)  # fmt: skip

    media = attempt(report, "liveportrait 512", {"variant": "(media)"}, Media.load, data)
    variants = () if media is None else EAGER if cuda else EAGER[:1]
    best: tuple[Variant, float] | None = None
    for variant in variants:
        row = attempt(report, "liveportrait 512", {"variant": variant.label},
                      run_variant, variant, nets, media, device, frames, warmup)  # fmt: skip
        if row is None:
            continue
        report.add("liveportrait 512", row)
        if best is None or row["e2e median ms"] < best[1]:
            best = (variant, row["e2e median ms"])
    count = (2 if cuda else 1) if args.quick else 4  # a CPU's 512 frame takes ~10 s
    session_frames = 1 if args.quick else 50
    if best is not None:
        chosen, single = best
        row = attempt(report, "sessions", {"variant": chosen.label}, run_sessions,
                      chosen, nets, media, device, count, session_frames, warmup, single)  # fmt: skip
        if row is not None:
            report.add("sessions", row)

    with tempfile.TemporaryDirectory() as tmp:
        encoder = load_content_encoder(hubert_file(Path(tmp)), "v2").to(device).eval()
    synth.to(device)
    rmvpe.to(device)
    blocks = 1 if args.quick else 100
    for low in (None, lowp) if cuda else (None,):
        for block_ms in (100.0, 160.0):
            label = {"precision": "fp32" if low is None else "float16", "block ms": block_ms}
            rvc_row = attempt(report, "rvc block", label, run_rvc, encoder, synth, rmvpe,
                              device, block_ms, low, blocks, 1 if args.quick else 10)  # fmt: skip
            if rvc_row is not None:
                report.add("rvc block", rvc_row)
    del encoder
    synth.to("cpu")
    rmvpe.to("cpu")

    for variant in COMPILED if media is not None else ():
        elapsed = time.perf_counter() - t_start
        if not cuda:
            report.add("liveportrait 512", {"variant": variant.label, "note": "skipped: CUDA only"})
            continue
        if elapsed + args.compile_s > args.budget_s:
            report.add("liveportrait 512", {"variant": variant.label,
                       "note": f"skipped: {elapsed:.0f} s used of the {args.budget_s:.0f} s budget"})  # fmt: skip
            continue
        row = attempt(report, "liveportrait 512", {"variant": variant.label},
                      run_variant, variant, nets, media, device, frames, warmup)  # fmt: skip
        if row is not None:
            report.add("liveportrait 512", row)
    imported = [m for m in DEVICE_LACKS if m in sys.modules]
    report.meta["imported of " + "/".join(DEVICE_LACKS)] = ", ".join(imported) or "none"
    report.meta["wall s"] = time.perf_counter() - t_start
    report.write()
    print(report.markdown(), flush=True)
    failed = [r["check"] for r in report.sections.get("golden", []) if r.get("pass") != "ok"]
    if imported:
        raise SystemExit(f"imported modules the device lacks: {', '.join(imported)}")
    if failed or report.errors:
        raise SystemExit(f"golden checks failed: {failed}; errors: {report.errors}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
