"""Milliseconds per block for the ``rvc`` converter with full-size, deterministic weights.

No real weights are needed: a HuBERT base in fairseq's layout (95M parameters) and an
official-config RVC model (40 kHz) are written with seeded random weights to a temporary
weights folder, then the converter is made through the registry as the server makes it.
Run: ``python bench/rvc.py [--device cpu|cuda|all] [--blocks 100 160] [--version v2]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python bench/rvc.py`

from mirage.models import create_converter
from mirage.models.voice.rvc.build import CONFIG_40K
from mirage.models.voice.rvc.checkpoint import save_synthesizer
from mirage.models.voice.rvc.synthesizer import Synthesizer, SynthesizerConfig

RATE = 16000


def fairseq_hubert_base(seed: int = 0) -> dict[str, torch.Tensor]:
    """A HuBERT base state dict in fairseq's key layout, fan-in scaled random weights."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, std: float | None = None) -> torch.Tensor:
        scale = std if std is not None else 1.0 / math.sqrt(math.prod(shape[1:]) or 1)
        return (torch.randn(*shape, generator=gen) * scale).half()

    sd: dict[str, torch.Tensor] = {}
    conv = [(512, 10)] + [(512, 3)] * 4 + [(512, 2)] * 2
    channels = 1
    for i, (dim, kernel) in enumerate(conv):
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = rand(dim, channels, kernel)
        channels = dim
    sd["feature_extractor.conv_layers.0.2.weight"] = 1 + rand(512, std=0.1)
    sd["feature_extractor.conv_layers.0.2.bias"] = rand(512, std=0.05)
    sd["layer_norm.weight"], sd["layer_norm.bias"] = 1 + rand(512, std=0.1), rand(512, std=0.05)
    sd["post_extract_proj.weight"], sd["post_extract_proj.bias"] = rand(768, 512), rand(768)
    sd["mask_emb"] = rand(768, std=1.0)
    sd["encoder.pos_conv.0.weight_g"] = 1 + rand(1, 1, 128, std=0.1)
    sd["encoder.pos_conv.0.weight_v"] = rand(768, 48, 128)
    sd["encoder.pos_conv.0.bias"] = rand(768, std=0.05)
    for n in range(12):
        p = f"encoder.layers.{n}"
        for name, (out, inp) in {
            "self_attn.k_proj": (768, 768), "self_attn.v_proj": (768, 768),
            "self_attn.q_proj": (768, 768), "self_attn.out_proj": (768, 768),
            "fc1": (3072, 768), "fc2": (768, 3072),
        }.items():  # fmt: skip
            sd[f"{p}.{name}.weight"], sd[f"{p}.{name}.bias"] = rand(out, inp), rand(out, std=0.05)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            sd[f"{p}.{norm}.weight"] = 1 + rand(768, std=0.1)
            sd[f"{p}.{norm}.bias"] = rand(768, std=0.05)
    sd["encoder.layer_norm.weight"] = 1 + rand(768, std=0.1)
    sd["encoder.layer_norm.bias"] = rand(768, std=0.05)
    sd["final_proj.weight"], sd["final_proj.bias"] = rand(256, 768), rand(256, std=0.05)
    sd["label_embs_concat"] = rand(504, 256)
    return sd


def write_weights(root: Path, version: str) -> None:
    (root / "hubert").mkdir(parents=True, exist_ok=True)
    cfg = {"model": {"conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
                     "encoder_attention_heads": 12}}  # fmt: skip
    torch.save({"model": fairseq_hubert_base(), "cfg": cfg}, root / "hubert" / "hubert_base.pt")
    torch.manual_seed(0)
    model = Synthesizer(SynthesizerConfig.from_list(CONFIG_40K), version)
    save_synthesizer(root / "rvc" / "model.pth", model, info="bench")


def voice(seconds: float) -> np.ndarray:
    """A gliding harmonic voice with breath noise and pauses (deterministic)."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(0.25 / k * np.sin(k * phase) for k in range(1, 12))
    x = x * (np.sin(2 * np.pi * 1.5 * t) > -0.6)  # syllables and gaps
    x = x + 0.01 * np.random.default_rng(0).normal(size=len(t))
    return x.astype(np.float32)


def run(root: Path, device: str, block_ms: float, context_s: float, n: int) -> dict[str, float]:
    conv = create_converter(
        "rvc", models_dir=str(root), device=device, block_ms=block_ms, context_s=context_s,
        noise_scale=0.0, nsf_noise_scale=0.0,
    )  # fmt: skip
    audio = voice((n + 5) * conv.block_size / RATE + 1)
    blocks = audio[: (n + 5) * conv.block_size].reshape(n + 5, conv.block_size)
    times = []
    for i, block in enumerate(blocks):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        conv.convert(block)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 5:  # warm-up blocks are not timed
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "mean": statistics.fmean(times),
        "p50": times[len(times) // 2],
        "p95": times[min(len(times) - 1, int(0.95 * len(times)))],
        "rtf": statistics.fmean(times) / block_ms,
        # algorithmic delay: the block's own buffering + the converter's latency_s
        "latency_ms": block_ms + conv.latency_s * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    parser.add_argument("--blocks", type=float, nargs="+", default=[100.0, 160.0])
    parser.add_argument("--context", type=float, default=1.0, help="context seconds")
    parser.add_argument("--version", default="v2", choices=["v1", "v2"])
    parser.add_argument("--n", type=int, default=0, help="timed blocks (default 20 CPU, 100 GPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_weights(root, args.version)
        print(f"rvc {args.version} 40k, context {args.context} s, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads")  # fmt: skip
        header = f"{'device':<28} {'block ms':>8} {'mean ms':>8} {'p50':>7} {'p95':>7} "
        print(header + f"{'RTF':>6} {'latency ms':>10}")
        for device in devices:
            name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
            n = args.n or (100 if device == "cuda" else 20)
            for block_ms in args.blocks:
                r = run(root, device, block_ms, args.context, n)
                print(f"{name:<28} {block_ms:>8.0f} {r['mean']:>8.1f} {r['p50']:>7.1f} "
                      f"{r['p95']:>7.1f} {r['rtf']:>6.2f} {r['latency_ms']:>10.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
