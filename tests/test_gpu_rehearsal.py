"""The GPU readiness command (bench/gpu.py) rehearsed on the CPU with what the lent GPU has.

No GPU is lent to CI, so ``bench/gpu.py --quick`` runs here in a fresh venv holding only
the device machine's packages (torch 2.13 CPU, numpy 2, opencv-python-headless, scipy,
pillow, transformers: no aiortc, PyAV, MediaPipe, pyworld or soxr; ``bench/device_venv.py``,
which ``make test`` runs before the suite), on data laid out by ``bench/gpu_prepare.py``
exactly as it would travel.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.conftest import GOLDEN, load_fill

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


@functools.cache
def bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(BENCH))  # gpu.py imports gpu_fill as a sibling
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data folder as it would travel (golden subset, media, recorded landmarks)."""
    dest = tmp_path_factory.mktemp("gpu") / ".gpu"
    bench_module("gpu_prepare").prepare(dest)
    return dest


def test_fill_copy_fills_what_the_shared_fill_fills(shared_dir: Path) -> None:
    """Every rule branch (spectral norm included) on small tensors, and every small tensor
    of the golden manifests, bit for bit."""
    mine, shared = bench_module("gpu_fill"), load_fill()
    entries: list[dict[str, Any]] = [
        {"key": "conv.weight", "shape": [4, 3, 3], "dtype": "float32"},
        {"key": "ln.weight", "shape": [5], "dtype": "float32"},
        {"key": "grn.gamma", "shape": [5], "dtype": "float32"},
        {"key": "fc.bias", "shape": [5], "dtype": "float32"},
        {"key": "bn.running_mean", "shape": [6], "dtype": "float32"},
        {"key": "bn.running_var", "shape": [6], "dtype": "float32"},
        {"key": "bn.num_batches_tracked", "shape": [], "dtype": "int64"},
        {"key": "wn.weight_g", "shape": [4, 1, 1], "dtype": "float32"},
        {"key": "sn.weight_orig", "shape": [8, 4, 3, 3], "dtype": "float32"},
        {"key": "sn.weight_u", "shape": [8], "dtype": "float32"},
        {"key": "sn.weight_v", "shape": [36], "dtype": "float32"},
    ]
    for path in sorted(GOLDEN.glob("*/*.manifest.json")):
        state = json.loads(path.read_text()).get("state_dict", [])  # chain has none
        entries += [e for e in state if int(np.prod(e["shape"])) <= 4096]
    for seed in (20240601, 7):
        a, b = mine.fill_state(entries, seed), shared.fill_state(entries, seed)
        assert list(a) == list(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


def test_fill_checksum_rejects_other_weights() -> None:
    mine = bench_module("gpu_fill")
    man = json.loads(
        (GOLDEN / "liveportrait" / "stitching_retargeting_module.manifest.json").read_text()
    )
    seed = man["fill"]["seed"]
    arrays = mine.fill_state(man["state_dict"], seed)
    assert mine.checksum_ok(arrays, man["fill"]["checksum"])
    assert not mine.checksum_ok(
        mine.fill_state(man["state_dict"], seed + 1), man["fill"]["checksum"]
    )


def test_what_travels_fits_the_device_limit(prepared: Path) -> None:
    prep = bench_module("gpu_prepare")
    info = json.loads((prepared / "prepared.json").read_text())
    assert info["frames"] > 0
    assert prep.travel_bytes(ROOT, [prepared]) <= prep.TRAVEL_LIMIT
    assert info["folder_bytes"] < 16 * 2**20  # the golden subset, not all 33 MB of it


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    gpu = bench_module("gpu")
    with pytest.raises(SystemExit, match=r"run bench/gpu_prepare\.py first"):
        gpu.main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--quick"])


def test_a_failing_step_becomes_a_row_and_the_run_goes_on(tmp_path: Path) -> None:
    gpu = bench_module("gpu")
    report = gpu.Report(tmp_path, {"device_name": "test"})

    def broken(x: int) -> None:
        raise RuntimeError(f"CUDA graph capture failed {x}\nsecond line")

    assert gpu.attempt(report, "liveportrait 512", {"variant": "v"}, broken, 3) is None
    assert gpu.attempt(report, "liveportrait 512", {"variant": "w"}, lambda: {"ok": 1}) == {"ok": 1}
    row = json.loads((tmp_path / "gpu.json").read_text())["sections"]["liveportrait 512"][0]
    assert row == {"variant": "v", "note": "ERROR RuntimeError: CUDA graph capture failed 3"}
    assert report.errors == ["liveportrait 512 {'variant': 'v'}"]
    assert "| v | ERROR RuntimeError" in (tmp_path / "gpu.md").read_text()


@pytest.mark.timeout(900)  # 1.5-4 min on an idle 2-core machine; a missing venv adds ~1
def test_quick_run_in_a_device_like_venv(prepared: Path, tmp_path: Path) -> None:
    venv = bench_module("device_venv")
    python = venv.ensure(ROOT)  # made by `make test` before the suite; here only if missing
    lacks = subprocess.run(
        [str(python), "-c", "import importlib.util as u, sys; "
         f"print([m for m in {venv.DEVICE_LACKS!r} if u.find_spec(m)])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert lacks.stdout.strip() == "[]", "the rehearsal venv must lack what the device lacks"
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), str(BENCH / "gpu.py"), "--data", str(prepared), "--out", str(out),
         "--quick", "--threads", "2"],  # the suite runs one test at a time: both cores
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=840,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu.json").read_text())
    meta, sections = report["meta"], report["sections"]
    assert meta["numpy"].startswith("2.") and meta["torch"].startswith("2.13")
    assert meta["imported of aiortc/av/mediapipe/pyworld/soxr/faiss"] == "none"
    assert {r["checksum"] for r in sections["fill"]} == {"ok"} and len(sections["fill"]) == 7
    golden = sections["golden"]
    assert {r["pass"] for r in golden} == {"ok"}
    assert {r["precision"] for r in golden} == {"fp32", "float16"}
    eager, *compiled = sections["liveportrait 512"]
    assert eager["variant"] == "fp32 eager" and eager["e2e median ms"] > 0
    # the replayed landmarks found the face: the networks ran, nothing was held
    assert eager["motion"] > 0 and eager["generate"] > 0 and eager["paste"] > 0
    assert [r["note"] for r in compiled] == ["skipped: CUDA only"] * 2
    assert sections["sessions"][0]["aggregate fps"] > 0
    assert sorted(r["block ms"] for r in sections["rvc block"]) == [100.0, 160.0]
    assert all(r["synthesizer ms"] > 0 and r["rmvpe ms"] > 0 for r in sections["rvc block"])
    markdown = (out / "gpu.md").read_text()
    assert "## liveportrait 512" in markdown and "## rvc block" in markdown
