"""How late RNNoise's output is when its per-frame function is called directly
(issue 21: could RNNoise fit the 10 ms budget without pyrnnoise's buffering?).

    python bench/rnnoise_delay.py

``rnnoise_process_frame`` from the library that ``pyrnnoise`` ships, through
ctypes (pyrnnoise's Python wrapper needs audiolab and resamples through an
FFmpeg graph: none of that is used here), 480-sample frames at 48 kHz, the
library's own rate. Three independent measures that could disagree:

- the peak of the cross-correlation of output against input on speech (espeak-ng,
  resampled once to 48 kHz, offline);
- the same on white noise at a level RNNoise takes for silence (it skips its
  network below a frame energy of 0.04 and passes the spectrum on unchanged):
  what the analysis and synthesis alone delay;
- the sample at which a lone click comes out (loud enough for the network: its
  gains may lower the click, never move it).

Prints a Markdown table and the library's CPU time per 10 ms frame.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.speech import speech

RATE = 48000
FRAME = 480


def library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("pyrnnoise")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs pyrnnoise (pip install pyrnnoise)")
    folder = next(iter(spec.submodule_search_locations))
    lib = ctypes.CDLL(os.path.join(folder, "librnnoise.so"))
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_get_frame_size.restype = ctypes.c_int
    ptr = ctypes.POINTER(ctypes.c_float)
    lib.rnnoise_process_frame.restype = ctypes.c_float
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ptr, ptr]
    return lib


def run(lib: ctypes.CDLL, x: np.ndarray) -> tuple[np.ndarray, float]:
    """``x`` (int16 scale) through one RNNoise state frame by frame; (output, CPU s)."""
    ptr = ctypes.POINTER(ctypes.c_float)
    state = lib.rnnoise_create(None)
    out = np.zeros(len(x) // FRAME * FRAME, np.float32)
    c0 = time.process_time()
    for i in range(0, len(out), FRAME):
        src = np.ascontiguousarray(x[i : i + FRAME], np.float32)
        dst = np.empty(FRAME, np.float32)
        lib.rnnoise_process_frame(state, dst.ctypes.data_as(ptr), src.ctypes.data_as(ptr))
        out[i : i + FRAME] = dst
    cpu = time.process_time() - c0
    lib.rnnoise_destroy(state)
    return out, cpu


def lag(x: np.ndarray, y: np.ndarray) -> int:
    n = 2 * len(y)
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x[: len(y)], n)), n)
    return int(np.argmax(corr[: RATE // 10]))


def main() -> None:
    lib = library()
    if lib.rnnoise_get_frame_size() != FRAME:
        raise SystemExit(f"unexpected frame size {lib.rnnoise_get_frame_size()}")
    voice = speech()
    voice = soxr.resample(0.3 * voice / np.max(np.abs(voice)), 16000, RATE) * 32767.0
    voice = np.concatenate([np.zeros(RATE // 2), voice]).astype(np.float32)
    out, cpu = run(lib, voice)
    rows = [("speech (espeak-ng), cross-correlation", lag(voice, out))]
    quiet = (np.random.default_rng(0).standard_normal(2 * RATE) * 1e-4).astype(np.float32)
    rows.append(
        (
            "white noise under its silence threshold, cross-correlation",
            lag(quiet, run(lib, quiet)[0]),
        )
    )
    click = np.zeros(RATE, np.float32)
    click[RATE // 2] = 1000.0
    heard = run(lib, click)[0]
    rows.append(("a lone click, where it comes out", int(np.argmax(np.abs(heard))) - RATE // 2))
    print("| RNNoise (pyrnnoise's library), per-frame calls at 48 kHz | delay samples | ms |")
    print("|---|---|---|")
    for label, samples in rows:
        print(f"| {label} | {samples} | {samples / RATE * 1000:.2f} |")
    frames = len(out) // FRAME
    print(f"\nCPU per 10 ms frame: {cpu / frames * 1e3:.3f} ms (RTF {cpu / (len(out) / RATE):.4f})")
    print(f"(load: {' '.join(f'{v:.2f}' for v in os.getloadavg())})")


if __name__ == "__main__":
    main()
