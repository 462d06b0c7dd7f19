"""``mirage doctor``: what this machine can run, and why not.

``diagnose(settings)`` gathers one JSON-able report: Python, torch/CUDA, GPUs and memory,
onnxruntime providers, the codecs aiortc needs from PyAV, every catalog weight file
(present / missing / corrupt), each backend's availability, what ``auto`` picks and what
it passed over, and the virtual camera. ``problems`` lists what stops the configured
face/voice backends from running; the command exits non-zero when it is not empty.
"""

from __future__ import annotations

import glob
import importlib
import platform
import sys
from pathlib import Path
from typing import Any, Literal

from mirage import __version__
from mirage.config import Settings
from mirage.models import registry
from mirage.models.base import UnknownBackend
from mirage.ops.catalog import CATALOG
from mirage.ops.download import check
from mirage.ops.gpu import gpu_info
from mirage.weights import models_dir

#: (PyAV codec, mode, what needs it, required): the codecs aiortc opens.
CODECS: tuple[tuple[str, Literal["r", "w"], str, bool], ...] = (
    ("libvpx", "w", "VP8 encoder", True),
    ("libvpx", "r", "VP8 decoder", True),
    ("libx264", "w", "H.264 encoder", False),
    ("h264", "r", "H.264 decoder", False),
    ("libopus", "w", "Opus encoder", True),
    ("libopus", "r", "Opus decoder", True),
)
#: Registry backend → the catalog backend whose files it loads.
WEIGHTS_OF = {"liveportrait": "liveportrait", "rvc": "rvc"}
GPU_BACKENDS = {"liveportrait", "rvc"}


def _python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "mirage": __version__,
    }


def _torch() -> dict[str, Any]:
    try:
        import torch
    except ImportError as exc:
        return {"version": None, "cuda": False, "reason": f"not installed ({exc})"}
    cuda = bool(torch.cuda.is_available())
    info: dict[str, Any] = {
        "version": torch.__version__,
        "cuda": cuda,
        "cuda_build": torch.version.cuda,
        "threads": torch.get_num_threads(),
    }
    if not cuda:
        info["reason"] = (
            "CPU-only build of torch" if torch.version.cuda is None else "no CUDA device visible"
        )
    return info


def _memory() -> dict[str, Any]:
    """Host memory from /proc/meminfo (Linux); empty elsewhere."""
    fields: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            fields[key] = int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        return {}
    return {"total_mb": fields.get("MemTotal"), "available_mb": fields.get("MemAvailable")}


def _onnxruntime() -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError as exc:
        return {"version": None, "providers": [], "reason": f"not installed ({exc})"}
    return {
        "version": onnxruntime.__version__,
        "providers": list(onnxruntime.get_available_providers()),
    }


def _codecs() -> dict[str, Any]:
    import av

    found = []
    for name, mode, role, required in CODECS:
        try:
            av.Codec(name, mode)
            ok = True
        except Exception:  # PyAV raises its own UnknownCodecError (a ValueError) or FFmpegError
            ok = False
        found.append({"codec": name, "mode": mode, "role": role, "required": required, "ok": ok})
    return {"av": av.__version__, "codecs": found}


def _virtual_camera() -> dict[str, Any]:
    devices = sorted(glob.glob("/dev/video*"))
    loopback = Path("/sys/module/v4l2loopback").exists()
    try:
        pyvirtualcam = importlib.import_module("pyvirtualcam")
        pvc: str | None = str(getattr(pyvirtualcam, "__version__", "installed"))
    except ImportError:
        pvc = None
    info: dict[str, Any] = {"devices": devices, "v4l2loopback": loopback, "pyvirtualcam": pvc}
    if not devices or not loopback:
        info["reason"] = (
            "no v4l2loopback device: `sudo modprobe v4l2loopback devices=1 exclusive_caps=1` "
            "(mirage client needs one to show the avatar in other apps)"
        )
    elif pvc is None:
        info["reason"] = "pyvirtualcam is not installed (pip install 'mirage-avatar[client]')"
    return info


def _weights(root: Path, checksums: bool) -> list[dict[str, Any]]:
    rows = []
    for entry in CATALOG:
        c = check(entry, root, checksum=checksums)
        rows.append(
            {
                "backend": entry.backend,
                "path": entry.path,
                "required": entry.required,
                "status": c.status,
                "detail": c.detail,
                "licence": entry.licence,
            }
        )
    return rows


def _corrupt_files(backend: str, weights: list[dict[str, Any]]) -> list[str]:
    catalog_backend = WEIGHTS_OF.get(backend)
    return [
        f"{w['path']} ({w['detail']})"
        for w in weights
        if w["backend"] == catalog_backend and w["status"] == "corrupt"
    ]


def _choice(
    kind: registry.Kind,
    configured: str,
    md: str | None,
    cuda: bool,
    weights: list[dict[str, Any]],
) -> dict[str, Any]:
    """What ``configured`` resolves to here, and whether it can run."""
    result: dict[str, Any] = {"configured": configured, "passed_over": [], "warnings": []}
    try:
        choice = registry.resolve(kind, configured, md)
    except UnknownBackend as exc:
        result.update(chosen=None, ok=False, problem=str(exc))
        return result
    result["passed_over"] = list(choice.passed)
    chosen = choice.name
    if choice.unavailable is not None:
        problem = f"{kind} backend {chosen}: {choice.unavailable}"
        result.update(chosen=chosen, ok=False, problem=problem)
        return result
    result["chosen"] = chosen
    corrupt = _corrupt_files(chosen, weights)
    if corrupt:
        result.update(
            ok=False,
            problem=f"{kind} backend {chosen}: corrupt weight files: {'; '.join(corrupt)}",
        )
        return result
    if chosen in GPU_BACKENDS and not cuda:
        result["warnings"].append(f"{chosen} runs on the CPU here: far from real time")
    result.update(ok=True, problem=None)
    return result


def diagnose(settings: Settings, checksums: bool = False) -> dict[str, Any]:
    """The whole report (JSON-able). ``checksums`` hashes every weight file (slow)."""
    md = settings.models_dir
    root = models_dir(md)
    torch_info = _torch()
    weights = _weights(root, checksums)
    from mirage.models.face import scrfd

    report: dict[str, Any] = {
        "python": _python(),
        "torch": torch_info,
        "gpu": gpu_info(),
        "memory": _memory(),
        "onnxruntime": _onnxruntime(),
        "media": _codecs(),
        "weights_dir": str(root),
        "weights": weights,
        "backends": {
            "face": registry.available("face", md),
            "voice": registry.available("voice", md),
            "detector": {"scrfd": scrfd.unavailable_reason(md)},
        },
        "choice": {
            "face": _choice("face", settings.face, md, torch_info["cuda"], weights),
            "voice": _choice("voice", settings.voice, md, torch_info["cuda"], weights),
        },
        "virtual_camera": _virtual_camera(),
    }
    problems = [c["problem"] for c in report["choice"].values() if c["problem"]]
    problems += [
        f"PyAV lacks the {c['role']} ({c['codec']}) that WebRTC media needs"
        for c in report["media"]["codecs"]
        if c["required"] and not c["ok"]
    ]
    report["problems"] = problems
    report["ok"] = not problems
    return report


# --- text rendering ------------------------------------------------------------------


def _mark(ok: bool | None) -> str:
    return {True: "ok ", False: "NO ", None: " - "}[ok]


def render(report: dict[str, Any]) -> str:
    """The report as sections of short lines, for people."""
    lines: list[str] = []
    add = lines.append
    py, t = report["python"], report["torch"]
    add("System")
    add(f"  python {py['version']} ({py['executable']}), mirage {py['mirage']}")
    add(f"  {py['platform']}")
    mem = report["memory"]
    if mem:
        add(f"  memory: {mem['available_mb']} MB available of {mem['total_mb']} MB")
    add("Torch / GPU")
    if t["version"] is None:
        add(f"  {_mark(False)}torch: {t['reason']}")
    else:
        cuda = "CUDA available" if t["cuda"] else f"no CUDA ({t['reason']})"
        add(f"  {_mark(t['cuda'])}torch {t['version']}: {cuda}")
    gpu = report["gpu"]
    if gpu["gpu"] is None:
        add(f"  {_mark(None)}GPU: {gpu['reason']}")
    else:
        for d in gpu["gpu"]:
            add(
                f"  {_mark(True)}GPU {d['index']}: {d['name']}, {d['memory_free_mb']} MB free "
                f"of {d['memory_total_mb']} MB (via {gpu['source']})"
            )
    ort = report["onnxruntime"]
    if ort["version"] is None:
        add(f"  {_mark(False)}onnxruntime: {ort['reason']}")
    else:
        add(f"  {_mark(True)}onnxruntime {ort['version']}: {', '.join(ort['providers'])}")
    add(f"Media (PyAV {report['media']['av']})")
    for c in report["media"]["codecs"]:
        need = "" if c["required"] else " (optional)"
        add(f"  {_mark(c['ok'])}{c['role']}: {c['codec']}{need}")
    add(f"Weights ({report['weights_dir']})")
    for w in report["weights"]:
        ok = {"ok": True, "unverified": True, "corrupt": False}.get(w["status"])
        need = "" if w["required"] else " (optional)"
        add(f"  {_mark(ok)}{w['path']}{need}: {w['detail']}")
    add("Backends")
    for kind in ("face", "voice", "detector"):
        for name, reason in report["backends"][kind].items():
            add(f"  {_mark(reason is None)}{kind} {name}" + (f": {reason}" if reason else ""))
    add("Configured")
    for kind, c in report["choice"].items():
        chosen = c.get("chosen") or "?"
        add(f"  {_mark(c['ok'])}{kind}: {c['configured']} → {chosen}")
        for p in c["passed_over"]:
            add(f"      passed over {p}")
        for w in c["warnings"]:
            add(f"      warning: {w}")
        if c["problem"]:
            add(f"      cannot run: {c['problem']}")
    vc = report["virtual_camera"]
    add("Virtual camera")
    devices = ", ".join(vc["devices"]) or "none"
    add(
        f"  {_mark(not vc.get('reason'))}devices: {devices}; v4l2loopback loaded: "
        f"{'yes' if vc['v4l2loopback'] else 'no'}; pyvirtualcam: {vc['pyvirtualcam'] or 'no'}"
    )
    if vc.get("reason"):
        add(f"      {vc['reason']}")
    add("")
    if report["ok"]:
        add("OK: the configured backends can run here.")
    else:
        add("PROBLEMS:")
        lines.extend(f"  - {p}" for p in report["problems"])
    return "\n".join(lines)
