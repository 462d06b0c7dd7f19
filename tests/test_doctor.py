"""``mirage doctor``, the start-up backend log, and ``GET /gpu``."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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
    assert face["passed_over"][0].startswith("liveportrait: missing")  # the first choice
    assert voice["chosen"] == "dsp"
    assert voice["passed_over"][0].startswith("rvc: missing")
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
    smi = shutil.which("nvidia-smi")
    listed = []  # what nvidia-smi itself lists, asked here rather than through gpu.py
    if smi is not None:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        listed = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    if torch.cuda.is_available():
        assert info["source"] == "torch"
        assert len(info["gpu"]) == torch.cuda.device_count()
        assert info["gpu"][0]["memory_total_mb"] > 0
    elif listed:
        assert info["source"] == "nvidia-smi" and len(info["gpu"]) == len(listed), info
        assert "torch cannot use CUDA here" in info["note"]
    else:
        assert info == {"gpu": None, "reason": "no GPU"}


# --- mirage bench ----------------------------------------------------------------------


def bench_script(name: str, monkeypatch: pytest.MonkeyPatch, *argv: str) -> ModuleType:
    """``bench/<name>.py`` imported by path, with ``argv`` as its command line."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", *argv])
    return module


# The bench parsers read what the scripts print: each script below runs its own main(),
# and where a measurement needs weights, a GPU or a minute, only that measurement is
# replaced by fixed numbers, so its table is the script's own formatting of them.


def test_bench_parser_reads_the_avatar_scripts_real_table() -> None:
    from mirage.ops import bench

    done = subprocess.run(
        [sys.executable, "bench/avatar.py", "--sizes", "128,64", "--frames", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.strip().startswith("128 |"))
    cells = [c.strip() for c in row.split("|")]
    total, fps = float(cells[-4]), float(cells[-1])
    assert bench.parse_avatar(done.stdout) == (
        f"128 px: {fps:.1f} fps ({total:.1f} ms/frame)",
        fps,
        "fps",
    )
    assert bench.parse_avatar("") is None


def test_bench_parser_reads_the_voice_scripts_real_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirage.ops import bench

    voice = bench_script("voice", monkeypatch)
    result = voice.run_case(voice.Case("dsp", {"preset": "bright"}), seconds=1.0)
    voice.print_table([result])
    text, value, unit = bench.parse_voice(capsys.readouterr().out) or ("", None, "")
    assert (value, unit) == (round(result.rtf, 3), "RTF")
    ms, latency = float(f"{result.ms_mean:.2f}"), float(f"{result.latency_ms:.1f}")  # as printed
    assert text == (
        f"dsp preset=bright, 10 ms blocks: RTF {result.rtf:.3f}, {ms:.1f} ms/block, "
        f"latency {latency:.0f} ms"
    )
    assert bench.parse_voice("nothing here\n") is None


def test_bench_parser_reads_the_loopback_scripts_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirage.ops import bench

    loopback = bench_script("loopback", monkeypatch, "--seconds", "1", "--codecs", "VP8")
    low_latency = {"aiortc-echo": 50.0, "mirage (sync off)": 55.0, "mirage": 62.0}

    async def measure(server: str, codec: str, seconds: float, client: bool, port: int) -> dict:
        video = low_latency[server] if client else low_latency[server] + 30
        return {"video_p50": video, "video_p95": video + 30, "audio_p50": video - 14,
                "audio_p95": video + 9, "fps": 19.9, "cpu": 41.0}  # fmt: skip

    monkeypatch.setattr(loopback, "measure", measure)
    asyncio.run(loopback.main())
    out = capsys.readouterr().out
    assert bench.parse_loopback(out) == ("VP8 round trip p50: video 62 ms, audio 48 ms", 62.0, "ms")
    assert bench.parse_loopback("| a | b |\n") is None


def test_bench_parser_reads_the_sync_scripts_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One case through a real server and probe; only the skews the probe measured are set."""
    from mirage.ops import bench

    sync = bench_script("sync", monkeypatch, "--seconds", "1")

    class Probe(sync.Probe):  # type: ignore[name-defined,misc]
        def av_skew(self) -> list[float]:
            return [0.4, 0.003, -0.002, 0.008, -0.011, 0.001]  # the first mark is dropped

    first = next(iter(sync.CASES))
    monkeypatch.setattr(sync, "CASES", {first: sync.CASES[first]})
    monkeypatch.setattr(sync, "Probe", Probe)
    asyncio.run(sync.main())
    out = capsys.readouterr().out
    assert f"| {first} | 5 | +1 | -11 … +8 | 11 |" in out  # the script's own row
    assert bench.parse_sync(out) == (f"{first}: skew median +1 ms, max |skew| 11 ms", 1.0, "ms")
    assert bench.parse_sync("| a | b |\n") is None


def test_bench_parser_reads_the_liveportrait_scripts_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirage.ops import bench

    lp = bench_script("liveportrait", monkeypatch, "--frames", "1", "--warmup", "1")
    per_variant = {"cpu": 8200.0, "cuda": 22.0}

    def run_variant(variant: object, *args: object) -> dict[str, float]:
        e2e = per_variant[variant.device] * (0.7 if variant.half else 1.0)  # type: ignore[attr-defined]
        return {**{s: 1.0 for s in lp.STAGES}, "total": e2e + 5, "e2e": e2e, "fps": 1000 / e2e}

    monkeypatch.setattr(lp, "unavailable_reason", lambda models_dir: "no weights here")
    monkeypatch.setattr(lp, "filled_networks", lambda: None)
    monkeypatch.setattr(lp, "read_media", lambda count: (None, []))
    monkeypatch.setattr(lp, "run_variant", run_variant)
    monkeypatch.setattr(lp.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(lp.torch.cuda, "get_device_name", lambda index=0: "Test GPU")
    lp.main()
    out = capsys.readouterr().out
    assert "| cpu fp32 |" in out  # the slower rows are there too; the fastest is the headline
    e2e = 22.0 * 0.7
    assert bench.parse_liveportrait(out) == (
        f"cuda fp16+channels_last: {e2e:.1f} ms/frame e2e, {1000 / e2e:.2f} fps",
        round(1000 / e2e, 2),
        "fps",
    )
    assert bench.parse_liveportrait("| a | b |\n") is None


def test_bench_parser_reads_the_rvc_scripts_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mirage.ops import bench

    rvc = bench_script("rvc", monkeypatch, "--blocks", "160", "--n", "1")
    speed = {"cpu": 410.2, "cuda": 12.5}

    def run(root: Path, device: str, block_ms: float, context_s: float, n: int) -> dict:
        mean = speed[device]
        return {"mean": mean, "p50": mean - 0.4, "p95": mean + 1.5, "rtf": mean / block_ms,
                "latency_ms": 213.0}  # fmt: skip

    monkeypatch.setattr(rvc, "write_weights", lambda root, version: None)
    monkeypatch.setattr(rvc, "run", run)
    monkeypatch.setattr(rvc.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(rvc.torch.cuda, "get_device_name", lambda index=None: "Test GPU 80GB")
    rvc.main()
    out = capsys.readouterr().out
    assert bench.parse_rvc(out) == (
        f"Test GPU 80GB, 160 ms blocks: 12.5 ms/block, RTF {12.5 / 160:.2f}",
        12.5,
        "ms/block",
    )


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
    # RTF = wall time / audio time: the script timed 3 s of audio (--seconds 3), so the
    # process that did it ran at least RTF × 3 s (the row's own wall clock, measured apart).
    assert row["unit"] == "RTF" and row["value"] > 0
    assert row["value"] * 3.0 < row["seconds"], row
    assert "dsp preset=bright, 10 ms blocks" in row["headline"]
    assert main(["bench", "--only", "nope"]) == 2
