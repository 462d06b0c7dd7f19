"""``mirage doctor``, the start-up backend log, and ``GET /gpu``."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mirage.cli import doctor as cli
from mirage.config import Settings
from mirage.ops import gpu
from mirage.ops.catalog import select
from mirage.ops.doctor import diagnose, render
from mirage.state import MirageServer
from tests.server_fixtures import StartServer, base_url

ROOT = Path(__file__).resolve().parents[1]


def doctor(models: Path, *flags: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(["doctor", "--models-dir", str(models), *flags])
    out = io.StringIO()
    return cli.run(args, out), out.getvalue()


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("MIRAGE_FACE", "MIRAGE_VOICE", "MIRAGE_MODELS_DIR"):
        monkeypatch.delenv(key, raising=False)


def test_auto_is_explained_and_runs(tmp_path: Path) -> None:
    report = diagnose(Settings(models_dir=str(tmp_path)))
    assert report["ok"] and report["problems"] == []
    face, voice = report["choice"]["face"], report["choice"]["voice"]
    assert (face["configured"], face["chosen"]) == ("auto", "warp")
    assert any(p.startswith("liveportrait: missing") for p in face["passed_over"])
    assert voice["chosen"] == "dsp"
    assert any(p.startswith("rvc: missing") for p in voice["passed_over"])
    statuses = {w["path"]: w["status"] for w in report["weights"]}
    assert set(statuses.values()) == {"missing"}
    assert statuses["rvc/model.pth"] == "missing"
    codecs = {(c["codec"], c["mode"]): c["ok"] for c in report["media"]["codecs"]}
    assert codecs[("libvpx", "w")] and codecs[("libopus", "w")]
    assert report["backends"]["detector"]["scrfd"] is not None  # no det_10g.onnx in tmp_path
    text = render(report)
    for section in ("System", "Torch / GPU", "Media", "Weights", "Backends", "Virtual camera"):
        assert section in text
    assert "passed over liveportrait: missing" in text
    assert "OK: the configured backends can run here." in text


def test_named_backend_without_weights_fails_and_names_the_file(tmp_path: Path) -> None:
    code, text = doctor(tmp_path, "--face", "liveportrait", "--voice", "rvc")
    assert code == 1
    assert "PROBLEMS:" in text
    lp = tmp_path / "liveportrait/base_models/appearance_feature_extractor.pth"
    assert f"face backend liveportrait: missing {lp}" in text
    assert f"voice backend rvc: missing weight file {tmp_path / 'rvc/model.pth'}" in text
    assert "mirage weights download liveportrait" in text


def test_corrupt_weights_fail_the_backend_that_loads_them(tmp_path: Path) -> None:
    for w in select(["liveportrait"]):
        path = tmp_path / w.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"truncated")  # present, so the loader's own check passes
    code, text = doctor(tmp_path, "--face", "liveportrait", "--voice", "dsp")
    assert code == 1
    assert "face backend liveportrait: corrupt weight files" in text
    assert "spade_generator.pth (size 9 bytes, expected 221813590)" in text
    # Sizes unknown to the catalog are caught by --checksums (warping_module has no size).
    code, text = doctor(tmp_path, "--face", "liveportrait", "--voice", "dsp", "--checksums")
    assert code == 1 and "warping_module.pth (sha256" in text


def test_unknown_backend_fails(tmp_path: Path) -> None:
    code, text = doctor(tmp_path, "--face", "nope", "--json")
    assert code == 1
    report = json.loads(text)
    assert report["ok"] is False
    assert report["choice"]["face"]["problem"].startswith("unknown face backend 'nope'")


def test_python_m_mirage_doctor_json(tmp_path: Path) -> None:
    env = {**os.environ, "MIRAGE_MODELS_DIR": str(tmp_path), "MIRAGE_FACE": "passthrough"}
    done = subprocess.run(
        [sys.executable, "-m", "mirage", "doctor", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["choice"]["face"]["chosen"] == "passthrough"
    assert report["weights_dir"] == str(tmp_path)
    assert report["python"]["executable"] == sys.executable


# --- start-up log --------------------------------------------------------------------


def test_startup_logs_one_line_per_backend(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mirage.state"):
        MirageServer(Settings(models_dir=str(tmp_path)))
    lines = [r.getMessage() for r in caplog.records]
    for kind, name in (("face", "warp"), ("face", "passthrough"), ("voice", "dsp")):
        assert f"{kind} backend {name}: available" in lines
    assert any(
        line.startswith("face backend liveportrait: unavailable (missing ") for line in lines
    )
    assert any(line.startswith("voice backend rvc: unavailable (missing ") for line in lines)
    assert any(line.startswith("face detector scrfd: unavailable") for line in lines)


# --- /gpu ----------------------------------------------------------------------------

# nvidia-smi --query-gpu=index,name,memory.total,memory.used,memory.free,utilization.gpu
#            --format=csv,noheader,nounits   (two cards; the second cannot report utilisation)
SMI_TEXT = """0, NVIDIA H100 80GB HBM3, 81559, 1234, 80325, 17
1, NVIDIA A10G, 23028, 0, 22563, [N/A]
"""


def test_nvidia_smi_parser() -> None:
    devices = gpu.parse_nvidia_smi(SMI_TEXT)
    assert devices == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "memory_total_mb": 81559,
            "memory_used_mb": 1234,
            "memory_free_mb": 80325,
            "utilization_pct": 17,
        },
        {
            "index": 1,
            "name": "NVIDIA A10G",
            "memory_total_mb": 23028,
            "memory_used_mb": 0,
            "memory_free_mb": 22563,
            "utilization_pct": None,
        },
    ]
    assert gpu.parse_nvidia_smi("\n") == []
    with pytest.raises(ValueError, match="3 fields, expected 6"):
        gpu.parse_nvidia_smi("0, x, 1\n")


def test_nvidia_smi_fallback_runs_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Torch without CUDA + an nvidia-smi on PATH → the tool's answer (a stand-in script)."""
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{SMI_TEXT}EOF\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(gpu, "from_torch", lambda: None)
    info = gpu.gpu_info()
    assert info["source"] == "nvidia-smi"
    assert [d["name"] for d in info["gpu"]] == ["NVIDIA H100 80GB HBM3", "NVIDIA A10G"]
    tool.write_text("#!/bin/sh\nexit 9\n")  # a failing tool is the same as none
    assert gpu.gpu_info() == {"gpu": None, "reason": "no GPU"}


async def test_gpu_endpoint_without_a_gpu(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp

    monkeypatch.setattr(gpu, "from_torch", lambda: None)
    monkeypatch.setattr(gpu, "from_nvidia_smi", lambda: None)
    server = await start_server()
    async with aiohttp.ClientSession() as http, http.get(base_url(server) + "/gpu") as resp:
        assert resp.status == 200
        assert await resp.json() == {"gpu": None, "reason": "no GPU"}


async def test_gpu_endpoint_reports_this_machine(start_server: StartServer) -> None:
    """Whatever this machine has, /gpu agrees with torch's own view of it."""
    import aiohttp
    import torch

    server = await start_server()
    async with aiohttp.ClientSession() as http, http.get(base_url(server) + "/gpu") as resp:
        info = await resp.json()
    if torch.cuda.is_available():
        assert info["source"] == "torch"
        assert len(info["gpu"]) == torch.cuda.device_count()
        assert info["gpu"][0]["memory_total_mb"] > 0
    else:
        assert info["gpu"] is None or info["source"] == "nvidia-smi"


# --- mirage bench ----------------------------------------------------------------------

VOICE_OUT = """| converter | block ms | ms/block | p95 ms | RTF | CPU RTF | latency_s ms | measured ms | block + latency_s ms |
|---|---|---|---|---|---|---|---|---|
| dsp preset=bright | 10 | 1.97 | 4.21 | 0.197 | 0.100 | 20.00 | 19.03 | 30.0 |

RTF = wall time / audio time; CPU RTF = this thread's CPU time / audio time.
"""
AVATAR_OUT = """ size | landmarks |    motion |    render | total ms | p95 ms | cpu ms |   fps
-------------------------------------------------------------------------------------
  512 |     15.30 |      0.91 |     23.42 |    39.66 |  44.86 |  13.26 |  25.2
  256 |      9.00 |      0.50 |      5.00 |    14.50 |  16.00 |   9.00 |  69.0
"""


def test_bench_parsers_read_the_scripts_tables() -> None:
    from mirage.ops import bench

    text, value, unit = bench.parse_voice(VOICE_OUT) or ("", None, "")
    assert (value, unit) == (0.197, "RTF")
    assert text == "dsp preset=bright, 10 ms blocks: RTF 0.197, 2.0 ms/block, latency 30 ms"
    assert bench.parse_avatar(AVATAR_OUT) == ("512 px: 25.2 fps (39.7 ms/frame)", 25.2, "fps")
    assert bench.parse_voice("nothing here\n") is None
    assert bench.parse_avatar("") is None


# The table shapes bench/{loopback,sync,liveportrait,rvc}.py print (their format strings).
LOOPBACK_OUT = """| codec | client receive | server | video p50 | video p95 | audio p50 | audio p95 | fps | CPU% | video vs echo | audio vs echo |
|---|---|---|---|---|---|---|---|---|---|---|
| VP8 | stock aiortc | mirage | 80 | 120 | 60 | 90 | 19.8 | 45 | 1.30× | 1.10× |
| VP8 | low-latency | aiortc-echo | 50 | 70 | 40 | 60 | 20.0 | 30 | 1.00× | 1.00× |
| VP8 | low-latency | mirage | 62 | 95 | 48 | 71 | 19.9 | 41 | 1.24× | 1.20× |
"""
SYNC_OUT = """| case | marks | median | p5 … p95 | max abs | playout delay | video RTT p50 |
|---|---|---|---|---|---|---|
| passthrough + passthrough | 9 | +3 | -2 … +8 | 11 | 120 | 95 |
"""
LIVEPORTRAIT_OUT = """# liveportrait, 512x512 output, weights: golden fill (real weights absent)
| variant | track | crop | motion | keypoints | warp | generate | readback | paste | total | e2e ms | fps |
|---|---|---|---|---|---|---|---|---|---|---|---|
| cpu fp32 | 10.0 | 1.0 | 90.0 | 1.0 | 3000.0 | 5000.0 | 1.0 | 5.0 | 8108.0 | 8200.0 | 0.12 |
| cuda fp16 cl | 9.0 | 0.5 | 2.0 | 0.3 | 4.0 | 5.0 | 0.6 | 1.0 | 22.4 | 14.8 | 67.57 |
"""
RVC_OUT = """rvc v2 40k, context 1.0 s, torch 2.13.0, 2 CPU threads
device                       block ms  mean ms     p50     p95    RTF latency ms
cpu                               160    410.2   405.0   450.1   2.56        213
NVIDIA H100 80GB HBM3             160     12.5    12.1    14.0   0.08        213
"""


def test_bench_parsers_for_the_other_scripts() -> None:
    from mirage.ops import bench

    assert bench.parse_loopback(LOOPBACK_OUT) == (
        "VP8 round trip p50: video 62 ms, audio 48 ms",
        62.0,
        "ms",
    )
    assert bench.parse_sync(SYNC_OUT) == (
        "passthrough + passthrough: skew median +3 ms, max |skew| 11 ms",
        3.0,
        "ms",
    )
    assert bench.parse_liveportrait(LIVEPORTRAIT_OUT) == (
        "cuda fp16 cl: 14.8 ms/frame e2e, 67.57 fps",
        67.57,
        "fps",
    )
    assert bench.parse_rvc(RVC_OUT) == (
        "NVIDIA H100 80GB HBM3, 160 ms blocks: 12.5 ms/block, RTF 0.08",
        12.5,
        "ms/block",
    )
    for parse in (bench.parse_loopback, bench.parse_sync, bench.parse_liveportrait):
        assert parse("| a | b |\n") is None


def test_bench_plan_skips_weight_benchmarks_without_weights(tmp_path: Path) -> None:
    from mirage.ops import bench

    plan = {s.name: (argv, why) for s, argv, why in bench.plan(models_dir=str(tmp_path))}
    assert plan["liveportrait"] == (None, "no liveportrait weights (--all runs it)")
    assert plan["rvc"][0] is None
    assert plan["voice"][0] is not None and plan["voice"][0][-2:] == ["--seconds", "3"]
    forced = {s.name: argv for s, argv, _ in bench.plan(run_all=True, models_dir=str(tmp_path))}
    assert forced["liveportrait"] is not None and "--models-dir" in forced["liveportrait"]
    with pytest.raises(ValueError, match="unknown bench nope"):
        bench.plan(only=["nope"])


def test_mirage_bench_only_voice_quick(capsys: pytest.CaptureFixture[str]) -> None:
    """The real script, run as `mirage bench --only voice --quick` does: one table row."""
    from mirage.cli import main

    assert main(["bench", "--only", "voice", "--quick", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["voice"]
    row = rows[0]
    assert row["status"] == "ok", row
    assert row["unit"] == "RTF" and 0 < row["value"] < 5
    assert "dsp preset=bright, 10 ms blocks" in row["headline"]
    assert main(["bench", "--only", "nope"]) == 2
