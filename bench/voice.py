"""Voice converter speed: ms per block and real-time factor on one CPU core.

    python bench/voice.py                         # dsp presets and block sizes, passthrough
    python bench/voice.py --backend rvc --option index_rate=0.5 --option block_ms=160

Converters are made through ``mirage.models.create_converter`` exactly as the
server makes them, and fed speech (espeak-ng when installed, otherwise a
synthetic vowel) at their own sample rate. RTF = processing time / audio time;
the targets for the default ``dsp`` (10 ms blocks) are RTF <= 0.3 on one core and an
algorithmic delay (block + the converter's ``latency_s``) of at most 30 ms.

The independent check of ``latency_s``: "measured" is the lag at which the output's
log spectrogram best matches the input's (``tests/delay.py``), over the first 5 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.models import MirageError, VoiceConverter, create_converter
from mirage.models.registry import find, unavailable_reason
from tests.delay import measured_delay

RATE = 16000


@dataclass(frozen=True)
class Case:
    backend: str
    options: dict[str, Any]

    @property
    def label(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.backend} {opts}".strip()


@dataclass(frozen=True)
class Result:
    case: Case
    block_ms: float
    ms_mean: float
    ms_p95: float
    rtf: float
    cpu_rtf: float
    latency_ms: float
    latency_s_ms: float
    measured_ms: float


def default_cases() -> list[Case]:
    cases = [Case("dsp", {"preset": p}) for p in ("neutral", "deep", "bright", "robot", "whisper")]
    cases.append(Case("dsp", {"semitones": 3}))  # pitch only
    cases += [Case("dsp", {"preset": "bright", "block_ms": ms}) for ms in (5, 20, 160)]
    cases.append(Case("passthrough", {}))
    return cases


def test_signal(seconds: float, rate: int) -> np.ndarray:
    """Speech from espeak-ng when it is installed, else a vowel with a moving pitch."""
    try:
        from tests.speech import speech

        voice = np.asarray(speech(rate=RATE), np.float32)
    except (ImportError, RuntimeError, OSError):
        t = np.arange(int(RATE * 4)) / RATE
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        voice = sum(
            np.sin(k * phase) / k * np.exp(-(((k * 120 - 700) / 400) ** 2)) for k in range(1, 30)
        )
        voice = (0.3 * voice / np.max(np.abs(voice))).astype(np.float32)
    reps = int(np.ceil(seconds * RATE / len(voice)))
    signal = np.tile(voice, reps)[: int(seconds * RATE)]
    if rate != RATE:
        signal = soxr.resample(signal, RATE, rate, quality="HQ")
    return np.ascontiguousarray(signal, np.float32)


def run_case(case: Case, seconds: float, warmup: int = 2) -> Result:
    converter: VoiceConverter = create_converter(case.backend, **case.options)
    signal = test_signal(seconds, converter.sample_rate)
    b = converter.block_size
    blocks = [signal[i : i + b] for i in range(0, len(signal) - b + 1, b)]
    outputs = [converter.convert(block) for block in blocks[:warmup]]
    times = []
    cpu_start = time.thread_time()
    for block in blocks[warmup:]:
        start = time.perf_counter()
        outputs.append(converter.convert(block))
        times.append(time.perf_counter() - start)
    cpu_s = time.thread_time() - cpu_start
    rate = converter.sample_rate
    head = min(len(signal), 5 * rate)
    y = np.concatenate(outputs)[:head]
    x16, y16 = (
        (signal[:head], y)
        if rate == RATE
        else (soxr.resample(signal[:head], rate, RATE), soxr.resample(y, rate, RATE))
    )
    measured = measured_delay(x16, y16) / RATE
    block_ms = 1000 * b / converter.sample_rate
    ms = 1000 * np.asarray(times)
    return Result(
        case=case,
        block_ms=block_ms,
        ms_mean=float(ms.mean()),
        ms_p95=float(np.percentile(ms, 95)),
        rtf=float(ms.mean() / block_ms),
        cpu_rtf=float(1000 * cpu_s / len(times) / block_ms),
        latency_ms=block_ms + 1000 * converter.latency_s,
        latency_s_ms=1000 * converter.latency_s,
        measured_ms=1000 * measured,
    )


def parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option wants key=value, got {pair!r}")
        options[key] = parse_value(value)
    return options


def print_table(results: list[Result]) -> None:
    """A Markdown table, ready for docs/benchmarks.md."""
    print(
        "| converter | block ms | ms/block | p95 ms | RTF | CPU RTF | latency_s ms "
        "| measured ms | block + latency_s ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.case.label} | {r.block_ms:g} | {r.ms_mean:.2f} | {r.ms_p95:.2f} | "
            f"{r.rtf:.3f} | {r.cpu_rtf:.3f} | {r.latency_s_ms:.2f} | {r.measured_ms:.2f} | "
            f"{r.latency_ms:.1f} |"
        )
    print()
    print("RTF = wall time / audio time; CPU RTF = this thread's CPU time / audio time.")
    print("latency_s = the converter's own figure; measured = the output's lag behind the")
    print("input by spectrogram cross-correlation; block + latency_s = algorithmic delay")
    print("(no network, no jitter buffer, no 20 ms WebRTC framing).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", help="benchmark only this voice backend")
    parser.add_argument("--option", action="append", default=[], help="k=v backend option")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per case")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one CPU core")
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.backend:
        cases = [Case(args.backend, parse_options(args.option))]
    elif args.option:
        raise SystemExit("--option needs --backend")
    else:
        cases = default_cases()
    results = []
    for case in cases:
        try:
            reason = unavailable_reason(find("voice", case.backend))
            if reason is not None:
                print(f"skipped {case.label}: {reason}", file=sys.stderr)
                continue
            results.append(run_case(case, args.seconds))
        except MirageError as exc:
            print(f"skipped {case.label}: {type(exc).__name__}: {exc}", file=sys.stderr)
    if not results:
        raise SystemExit("nothing to benchmark")
    print_table(results)


if __name__ == "__main__":
    main()
