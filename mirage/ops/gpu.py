"""What GPUs this process can see: torch's view first, ``nvidia-smi`` when torch has no CUDA.

Used by the ``/gpu`` endpoint and by ``mirage doctor``. Both sources are blocking (torch
may initialise CUDA, nvidia-smi is a subprocess), so the endpoint calls ``gpu_info`` in a
thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
from typing import Any

from aiohttp import web

MB = 1024 * 1024
#: ``nvidia-smi --query-gpu`` fields, in the order the parser expects.
SMI_FIELDS = ("index", "name", "memory.total", "memory.used", "memory.free", "utilization.gpu")
SMI_TIMEOUT_S = 5.0


def from_torch() -> list[dict[str, Any]] | None:
    """One record per CUDA device torch sees, or ``None`` without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        devices.append(
            {
                "index": index,
                "name": props.name,
                "memory_total_mb": round(total / MB),
                "memory_used_mb": round((total - free) / MB),
                "memory_free_mb": round(free / MB),
                "torch_allocated_mb": round(torch.cuda.memory_allocated(index) / MB),
                "torch_reserved_mb": round(torch.cuda.memory_reserved(index) / MB),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return devices


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parse ``nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`` output.

    Values nvidia-smi cannot read come back as ``[N/A]`` / ``[Not Supported]``: they
    become ``None``.
    """

    def number(cell: str) -> int | None:
        cell = cell.strip()
        try:
            return round(float(cell))
        except ValueError:
            return None

    devices = []
    for row in csv.reader(io.StringIO(text)):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(SMI_FIELDS):
            raise ValueError(f"nvidia-smi row has {len(row)} fields, expected {len(SMI_FIELDS)}")
        cells = [c.strip() for c in row]
        devices.append(
            {
                "index": number(cells[0]),
                "name": cells[1],
                "memory_total_mb": number(cells[2]),
                "memory_used_mb": number(cells[3]),
                "memory_free_mb": number(cells[4]),
                "utilization_pct": number(cells[5]),
            }
        )
    return devices


def from_nvidia_smi() -> list[dict[str, Any]] | None:
    """GPUs as ``nvidia-smi`` reports them, or ``None`` when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT_S,
            check=True,
        )
        devices = parse_nvidia_smi(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return devices or None


def gpu_info() -> dict[str, Any]:
    """``{"gpu": [devices], "source": "torch"|"nvidia-smi"}`` or ``{"gpu": None, "reason": ...}``."""
    devices = from_torch()
    if devices:
        return {"gpu": devices, "source": "torch"}
    devices = from_nvidia_smi()
    if devices:
        note = "torch cannot use CUDA here (CPU build or driver mismatch)"
        return {"gpu": devices, "source": "nvidia-smi", "note": note}
    return {"gpu": None, "reason": "no GPU"}


async def handle_gpu(request: web.Request) -> web.Response:
    """``GET /gpu``: the devices, their memory, and which source said so."""
    info = await asyncio.get_running_loop().run_in_executor(None, gpu_info)
    return web.json_response(info)
