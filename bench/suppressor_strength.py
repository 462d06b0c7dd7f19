"""What the suppressor's strength (mirage/engine/strength.py) reads on the issue-21
material: the SNR it estimates and the strength it picks, against the SNR the
material was mixed at (a known truth it can disagree with).

    python bench/suppressor_strength.py

Material is bench/voice_quality.py's (espeak-ng speech; babble, music and a fan at
30/20/10/5 dB, SNR over the active speech), plus the clean speech with a white noise
floor at -70 and -60 dBFS (a quiet microphone). Each row: the estimate's 10th
percentile and median over the clip after its first 2 s, and the mean strength
there (1: suppressed in full, 0: bypassed). Runs in seconds, no DNSMOS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import voice_quality as vq

from mirage.engine.denoise import FRAME, RATE
from mirage.engine.strength import SuppressionStrength


def read(x: np.ndarray) -> tuple[float, float, float]:
    meter = SuppressionStrength(FRAME, RATE)
    snrs, values = [], []
    for i in range(0, len(x) // FRAME * FRAME, FRAME):
        meter(x[i : i + FRAME])
        snrs.append(meter.snr_db)
        values.append(meter.value)
    skip = 2 * RATE // FRAME
    after = np.array(snrs[skip:])
    return float(np.percentile(after, 10)), float(np.median(after)), float(np.mean(values[skip:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    vq.add_material_arguments(parser)
    args = parser.parse_args()
    stuff = vq.material(args.speech, args.pair)
    print(f"speech: {stuff.name}\n")
    clean = stuff.clean
    rng = np.random.default_rng(100)
    rows: list[tuple[str, str, np.ndarray]] = [("clean", "∞", clean)]
    for floor_db in (-70, -60):
        hiss = rng.standard_normal(len(clean)).astype(np.float32) * 10 ** (floor_db / 20)
        rows.append((f"clean + {floor_db} dBFS white floor", "-", clean + hiss))
    for name, make in stuff.noises.items():
        noise = make(len(clean), rng)
        for snr in (30, 20, 10, 5):
            rows.append((name, f"{snr}", vq.mix(clean, noise, snr)))
    print("| input | mixed at SNR dB | estimated SNR dB (p10 / median) | mean strength |")
    print("|---|---|---|---|")
    for label, snr, x in rows:
        p10, median, strength = read(x)
        print(f"| {label} | {snr} | {p10:.0f} / {median:.0f} | {strength:.2f} |")


if __name__ == "__main__":
    main()
