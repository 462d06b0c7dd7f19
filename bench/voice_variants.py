"""Which change to the voice chain lifts DNSMOS at 10 dB SNR: the variants tried for
issue 21, each on the same clean speech and on several draws of each noise.

    python bench/voice_variants.py                 # every variant, 3 noise draws
    python bench/voice_variants.py chain no-voiced-noise-cut --seeds 5
    python bench/voice_variants.py chain level-1 suppressor-dsp --preset deep
    python bench/voice_variants.py chain full-strength dsp-alone --floor -60
    python bench/voice_variants.py chain sharpen-1.3 voiced-sub-4 --seeds 4 --lsd
    python bench/voice_variants.py chain --seeds 3 --pitch --speech DIR --pair 1

One 10 s clip scores ±0.1 OVRL from one noise draw to the next, and clean speech
±0.15 from one block phase to the next (the same clip started 0-7 ms later: the
converter's 5 ms frames fall elsewhere), so each cell is the mean over ``--seeds``
noise draws (clean: block phases) ± their standard deviation, then DNSMOS P.808 (the
second, separately trained model); ``--lsd`` adds a measure with no network at all: the
noisy outputs' log-spectral distance (dB, 32 mel bands) to dsp alone on the clean
speech, over the clean speech's active frames; ``--pitch`` another: the converted voice's pitch read by
WORLD's Harvest against Harvest on the clean input times the preset's shift (the
share of frames voiced in both that are more than 20 % off: a squeak or a growl,
which DNSMOS hardly hears, and the share of the input's voiced frames left
unvoiced). Material and
scoring are bench/voice_quality.py's; the variants change one thing each, some by
patching a module constant or method for the run (a measurement, not a setting).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import voice_quality as vq

from mirage.engine import denoise, strength
from mirage.engine.denoise import FrameSuppressor
from mirage.engine.gate import GateTiming, VoiceGate
from mirage.engine.voicechain import CleanVoice
from mirage.models import create_converter
from mirage.models.voice import dsp
from mirage.models.voice.passthrough import PassthroughConverter
from mirage.models.voice.presets import VoiceParams, resolve

RATE = vq.RATE
PRESET = "bright"
Variant = Callable[[np.ndarray], np.ndarray]


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def chain(x: np.ndarray, level: int = 3, timing: GateTiming | None = None) -> np.ndarray:
    voice = CleanVoice(create_converter("dsp", preset=PRESET), level)
    if timing is not None:
        voice.cleaner.gate = VoiceGate(RATE, 160, timing)
    return vq.run_stream(voice, x)[0]


def dsp_alone(x: np.ndarray) -> np.ndarray:
    return vq.run_stream(create_converter("dsp", preset=PRESET), x)[0]


def suppressed(x: np.ndarray, level: int = 3) -> np.ndarray:
    ns = FrameSuppressor(level)
    return np.concatenate([ns(x[i : i + 160])[0] for i in range(0, len(x) // 160 * 160, 160)])


def full_strength(run: Variant) -> Variant:
    """``run`` with the suppressor at full strength whatever the input's SNR (before)."""

    def full(x: np.ndarray) -> np.ndarray:
        with patched(strength.SuppressionStrength, "target", lambda self, snr_db: 1.0):
            return run(x)

    return full


def gated(x: np.ndarray) -> np.ndarray:
    return vq.run_stream(CleanVoice(PassthroughConverter(RATE, 10.0), 3), x)[0]


def rnnoise(x: np.ndarray) -> np.ndarray:
    run = vq.rnnoise_candidate()
    if run is None:
        raise SystemExit("RNNoise variants need pyrnnoise")
    return run(x)


def speex(x: np.ndarray) -> np.ndarray:
    run = vq.speex_candidate()
    if run is None:
        raise SystemExit("Speex variants need speexdsp-ns")
    return run(x)


def without_voiced_noise_cut(x: np.ndarray) -> np.ndarray:
    with patched(dsp, "_VOICED_NOISE_SCALE", 1.0):
        return chain(x)


def quieter_unvoiced(x: np.ndarray) -> np.ndarray:
    call = dsp.PulseSynth.__call__

    def quieter(self: Any, f0: Any, envelope: Any, ratio: Any, gain: Any) -> Any:
        return call(self, f0, envelope, ratio, np.where(f0 > 0, gain, 0.3 * gain))

    with patched(dsp.PulseSynth, "__call__", quieter):
        return chain(x)


def without_f0_hold(x: np.ndarray) -> np.ndarray:
    """The pitch tracker with no hysteresis: every frame needs a fresh start's 0.6."""
    with patched(dsp, "_NCCF_KEEP", 2.0):
        return chain(x)


def voicing_threshold(value: float) -> Variant:
    def run(x: np.ndarray) -> np.ndarray:
        with patched(dsp, "_NCCF_VOICED", value):
            return chain(x)

    return run


def envelope_subtraction(x: np.ndarray, beta: float = 3.0, frames: int = 300) -> np.ndarray:
    """Spectral subtraction inside the converter (no added delay): each envelope less
    ``beta`` x its per-bin minimum over the last 1.5 s of analysed frames."""
    analyse = dsp.DspConverter._analyse
    recent: collections.deque[np.ndarray] = collections.deque(maxlen=frames)

    def subtracted(self: Any, history: Any, first: int, last: int) -> Any:
        f0, envelope, aperiodicity = analyse(self, history, first, last)
        recent.extend(envelope)
        floor = np.min(np.asarray(recent), axis=0)
        gain = np.maximum(1.0 - beta * floor / np.maximum(envelope, 1e-16), 0.1)
        return f0, envelope * gain, aperiodicity

    with patched(dsp.DspConverter, "_analyse", subtracted):
        return chain(x)


def noise_share_cut(cut: float, floor: float = 0.1) -> Variant:
    """dsp's voiced envelope below 4 kHz times ``max(1 - cut x share, floor)``, share the
    aperiodic energy share D4C gave it (before the voiced-noise cut): the frame's own
    noise estimate, no past needed."""
    call = dsp.PulseSynth.__call__

    def less(self: Any, f0: Any, envelope: Any, ratio: Any, gain: Any) -> Any:
        voiced = f0 > 0
        low = np.arange(ratio.shape[1]) * RATE / dsp._FFT < dsp._VOICED_NOISE_HZ
        share = ratio[np.ix_(voiced, low)] / dsp._VOICED_NOISE_SCALE  # as D4C gave it
        out = envelope.copy()
        out[np.ix_(voiced, low)] *= np.maximum(1.0 - cut * share, floor)
        return call(self, f0, out, ratio, gain)

    def run(x: np.ndarray) -> np.ndarray:
        with patched(dsp.PulseSynth, "__call__", less):
            return chain(x)

    return run


def voiced_subtraction(
    beta: float, floor: float = 0.1, frames: int = 300, inner: Variant = chain
) -> Variant:
    """Min-statistics subtraction on dsp's envelope, the floor taken over voiced frames
    only (the gate leaves the pauses silent, so a minimum over all frames sees no noise)."""

    def run(x: np.ndarray) -> np.ndarray:
        analyse = dsp.DspConverter._analyse
        recent: collections.deque[np.ndarray] = collections.deque(maxlen=frames)

        def subtracted(self: Any, history: Any, first: int, last: int) -> Any:
            f0, envelope, aperiodicity = analyse(self, history, first, last)
            voiced = f0 > 0
            recent.extend(envelope[voiced])
            if not recent or not np.any(voiced):
                return f0, envelope, aperiodicity
            noise = np.min(np.asarray(recent), axis=0)
            gain = np.maximum(1.0 - beta * noise / np.maximum(envelope, 1e-16), floor)
            out = envelope.copy()
            out[voiced] *= gain[voiced]
            return f0, out, aperiodicity

        with patched(dsp.DspConverter, "_analyse", subtracted):
            return inner(x)

    return run


def sharpened(gamma: float, width_hz: float = 600.0, inner: Variant = chain) -> Variant:
    """dsp's voiced envelope with its log contrast against a ``width_hz`` moving average
    scaled by ``gamma`` (formant emphasis), frame energy kept."""
    bins = max(3, int(width_hz * dsp._FFT / RATE) | 1)
    kernel = np.ones(bins) / bins

    def run(x: np.ndarray) -> np.ndarray:
        analyse = dsp.DspConverter._analyse

        def sharp(self: Any, history: Any, first: int, last: int) -> Any:
            f0, envelope, aperiodicity = analyse(self, history, first, last)
            out = envelope.copy()
            for row in np.flatnonzero(f0 > 0):
                log = np.log(envelope[row] + 1e-16)
                pad = np.pad(log, bins // 2, mode="edge")
                smooth = np.convolve(pad, kernel, mode="valid")
                e = np.exp(smooth + gamma * (log - smooth))
                out[row] = e * envelope[row].sum() / e.sum()
            return f0, out, aperiodicity

        with patched(dsp.DspConverter, "_analyse", sharp):
            return inner(x)

    return run


def without_low_shelf(x: np.ndarray) -> np.ndarray:
    with patched(denoise.LowShelf, "__call__", lambda self, x: x):
        return chain(x)


def without_gate(x: np.ndarray) -> np.ndarray:
    with patched(VoiceGate, "__call__", lambda self, frame, speech: frame):
        return chain(x)


def linear(noisy_db: float, clean_db: float) -> Variant:
    """The chain with a strength linear in dB between full (``noisy_db``) and the
    bypass (``clean_db``), instead of the switch with hysteresis (tried first)."""
    span = clean_db - noisy_db

    def target(self: Any, snr_db: float) -> float:
        return float(np.clip((clean_db - snr_db) / span, 0.0, 1.0))

    def run(x: np.ndarray) -> np.ndarray:
        with patched(strength.SuppressionStrength, "target", target):
            return chain(x)

    return run


def masked_by_clean(clean: np.ndarray) -> Variant:
    """Oracle: the chain's output silenced outside the clean speech's active frames
    (±30 ms): what a perfect gate would add."""
    frames = clean[: len(clean) // 160 * 160].reshape(-1, 160)
    power = np.mean(frames**2, axis=1)
    active = np.convolve((power > power.max() * 1e-4).astype(float), np.ones(7), "same") > 0

    def run(x: np.ndarray) -> np.ndarray:
        y = chain(x)
        n = min(len(y) // 160, len(active))
        return (y[: n * 160].reshape(-1, 160) * active[:n, None]).reshape(-1)

    return run


def band_log_spectra(x: np.ndarray, bands: int = 32) -> np.ndarray:
    """Frames (32 ms, 10 ms hop) x log10 power in ``bands`` bands evenly spaced in mel."""
    size, hop = 512, 160
    n = (len(x) - size) // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop][:n] * np.hanning(size)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = 2595 * np.log10(1 + np.fft.rfftfreq(size, 1 / RATE) / 700)
    edges = np.linspace(mel[1], mel[-1], bands + 1)
    which = np.clip(np.searchsorted(edges, mel) - 1, 0, bands - 1)
    summed = np.stack([power[:, which == b].sum(axis=1) for b in range(bands)], axis=1)
    return np.asarray(np.log10(summed + 1e-12))


def envelope_distance(y: np.ndarray, reference: np.ndarray) -> float:
    """Log-spectral distance (dB, RMS over bands, mean over the reference's active
    frames) of ``y``'s band envelope to ``reference``'s: a second measure, no network."""
    a, b = band_log_spectra(y), band_log_spectra(reference)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    level = b.max(axis=1)
    active = level > level.max() - 4.0  # within 40 dB of the loudest frame
    return float(np.mean(np.sqrt(np.mean((10 * (a - b)[active]) ** 2, axis=1))))


def band_bias(y: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean dB of ``y``'s bands over ``reference``'s, on the reference's loud frames (within
    20 dB of its loudest): where an output's envelope sits above (noise left) or below
    (speech taken) the clean conversion's."""
    a, b = band_log_spectra(y), band_log_spectra(reference)
    n = min(len(a), len(b))
    level = b[:n].max(axis=1)
    loud = level > level.max() - 2.0
    return np.asarray(10 * (a[:n] - b[:n])[loud].mean(axis=0))


#: Variants whose output is not converted: their pitch is the input's.
UNCONVERTED = frozenset(
    {"input", "suppressor+gate", "suppressor", "suppressor-full", "rnnoise", "speex"}
)


def harvest(x: np.ndarray) -> np.ndarray:
    """WORLD's Harvest F0 (Hz, 0 = unvoiced) every 5 ms: a tracker unrelated to dsp's."""
    import pyworld

    f0, _ = pyworld.harvest(x.astype(np.float64), RATE, f0_floor=60.0, f0_ceil=800.0)
    return f0


def pitch_error(y: np.ndarray, reference_f0: np.ndarray, semitones: float) -> tuple[float, float]:
    """(share of the frames voiced in both where ``y``'s Harvest F0 is more than 20 % off
    ``reference_f0`` shifted by ``semitones``, share of the reference's voiced frames
    that ``y`` leaves unvoiced); ``y`` is aligned with the reference's input."""
    f0 = harvest(y)
    n = min(len(f0), len(reference_f0))
    got, want = f0[:n], reference_f0[:n] * 2 ** (semitones / 12)
    both = (got > 0) & (want > 0)
    off = float(np.mean(np.abs(got[both] / want[both] - 1.0) > 0.2)) if np.any(both) else 1.0
    lost = float(np.sum((want > 0) & (got <= 0)) / max(1, np.sum(want > 0)))
    return off, lost


def variants(clean: np.ndarray) -> dict[str, tuple[str, Variant]]:
    """name -> (what it changes, the run)."""
    return {
        "chain": (
            "as shipped: WebRTC NS 3 (bypassed at ≥ 55 dB SNR) → gate → low shelf → dsp (6 ms)",
            chain,
        ),
        "full-strength": (
            "the suppressor at full strength on any input (before)",
            full_strength(chain),
        ),
        "no-voiced-noise-cut": (
            "dsp keeps voiced frames' aperiodic share (before)",
            without_voiced_noise_cut,
        ),
        "input": ("the input itself, nothing run (what the targets add 0.5 to)", lambda x: x),
        "dsp-alone": ("the converter without the chain", dsp_alone),
        "no-f0-hold": ("pitch tracker without its hysteresis (before)", without_f0_hold),
        "suppressor+gate": ("no converter: what the front end (NS, gate, shelf) gives it", gated),
        "linear-35-50": (
            "strength linear from full at 35 dB to the bypass at 50 dB",
            linear(35.0, 50.0),
        ),
        "linear-45-60": (
            "strength linear from full at 45 dB to the bypass at 60 dB",
            linear(45.0, 60.0),
        ),
        "suppressor": ("WebRTC NS alone, strength by the SNR", suppressed),
        "suppressor-full": ("WebRTC NS alone, full strength", full_strength(suppressed)),
        "suppressor-dsp": ("no gate, no shelf", lambda x: dsp_alone(suppressed(x))),
        "no-low-shelf": ("the suppressor's low cut not given back (before)", without_low_shelf),
        "no-gate": ("the chain without its voice gate", without_gate),
        "level-1": ("suppressor level 1 (low)", lambda x: chain(x, level=1)),
        "level-4": ("suppressor level 4 (max)", lambda x: chain(x, level=4)),
        "gate-100ms-12dB": (
            "gate hold 100 ms, margin 12 dB",
            lambda x: chain(x, timing=GateTiming(hold_ms=100.0, margin_db=12.0)),
        ),
        "oracle-gate": ("chain, silenced where the clean speech is", masked_by_clean(clean)),
        "unvoiced-x0.3": ("dsp's unvoiced frames 10 dB quieter", quieter_unvoiced),
        "voicing-0.7": ("pitch tracker voiced above 0.7 (not 0.6)", voicing_threshold(0.7)),
        "envelope-subtraction": ("min-statistics subtraction in dsp", envelope_subtraction),
        "share-cut-1": ("dsp's voiced envelope less its aperiodic share", noise_share_cut(1.0)),
        "share-cut-2": ("dsp's voiced envelope less 2x its aperiodic share", noise_share_cut(2.0)),
        "share-cut-4": ("dsp's voiced envelope less 4x its aperiodic share", noise_share_cut(4.0)),
        "voiced-sub-2": (
            "min-statistics over voiced frames, 2x subtracted",
            voiced_subtraction(2.0),
        ),
        "voiced-sub-4": (
            "min-statistics over voiced frames, 4x subtracted",
            voiced_subtraction(4.0),
        ),
        "sharpen-1.3": ("voiced envelope's contrast x1.3 (600 Hz)", sharpened(1.3)),
        "sharpen-1.6": ("voiced envelope's contrast x1.6 (600 Hz)", sharpened(1.6)),
        "sharpen-1.2": ("voiced envelope's contrast x1.2 (600 Hz)", sharpened(1.2)),
        "sharpen-1.3-1k": ("voiced envelope's contrast x1.3 (1 kHz)", sharpened(1.3, 1000.0)),
        "voiced-sub-8": (
            "min-statistics over voiced frames, 8x subtracted",
            voiced_subtraction(8.0),
        ),
        "sub-4+sharpen-1.3": (
            "voiced-sub-4, then sharpen-1.3",
            voiced_subtraction(4.0, inner=sharpened(1.3)),
        ),
        "sharpen-2.0": ("voiced envelope's contrast x2 (600 Hz)", sharpened(2.0)),
        "sharpen-1.6-1k": ("voiced envelope's contrast x1.6 (1 kHz)", sharpened(1.6, 1000.0)),
        "sharpen-1.6-300": ("voiced envelope's contrast x1.6 (300 Hz)", sharpened(1.6, 300.0)),
        "output-ns": ("chain → WebRTC NS 3 again (+6 ms)", lambda x: suppressed(chain(x))),
        "rnnoise-front": (
            "RNNoise → WebRTC NS → gate → dsp (+20 ms)",
            lambda x: dsp_alone(gated(rnnoise(x))),
        ),
        "rnnoise": ("RNNoise alone (20 ms)", rnnoise),
        "speex": ("Speex NS alone (speexdsp-ns, 10 ms)", speex),
        "speex-dsp": (
            "Speex NS → dsp, no gate, no shelf (as suppressor-dsp)",
            lambda x: dsp_alone(speex(x)),
        ),
    }


def main(argv: list[str] | None = None) -> None:
    global PRESET
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="variants to run (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="noise draws per noise")
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--preset", default=PRESET, help="dsp preset to convert with")
    parser.add_argument(
        "--lsd",
        action="store_true",
        help="also the noisy outputs' log-spectral distance (dB) to dsp alone on the clean speech "
        "(and, on stderr, draw 0's band bias against it: every 4th of the 32 bands)",
    )
    parser.add_argument(
        "--pitch",
        action="store_true",
        help="also the output's gross pitch error and lost voicing, by Harvest against the "
        "clean input (shifted by the preset)",
    )
    parser.add_argument("--clean-only", action="store_true", help="score the clean column only")
    parser.add_argument(
        "--floor",
        type=float,
        default=None,
        help="dBFS of a white hiss added to the clean speech (a quiet microphone)",
    )
    vq.add_material_arguments(parser)
    args = parser.parse_args(argv)
    PRESET = args.preset
    stuff = vq.material(args.speech, args.pair)
    clean = stuff.clean
    noisy: dict[str, list[np.ndarray]] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(100 + seed)
        for name, make in {} if args.clean_only else stuff.noises.items():
            noisy.setdefault(name, []).append(vq.mix(clean, make(len(clean), rng), args.snr))
    # Clean speech at as many block phases (0-7 ms of silence first) as noise draws.
    phases = [
        np.concatenate([np.zeros(i * 120 // args.seeds, np.float32), clean])
        for i in range(args.seeds)
    ]
    if args.floor is not None:
        hiss = np.random.default_rng(99).standard_normal(len(phases[-1])) * 10 ** (args.floor / 20)
        phases = [p + hiss[: len(p)].astype(np.float32) for p in phases]
    table = variants(clean)
    reference = dsp_alone(clean) if args.lsd else None
    # Harvest on what each input's speech is: the phase-shifted clean speech, or the clean
    # speech under the noise.
    pitch_refs: dict[str, list[np.ndarray]] = {}
    if args.pitch:
        clean_f0 = harvest(clean)
        pitch_refs = {"clean": [harvest(p) for p in phases]}
        pitch_refs.update({label: [clean_f0] * len(xs) for label, xs in noisy.items()})
    shift = resolve(VoiceParams(), PRESET).semitones
    unknown = set(args.names) - set(table)
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}; known: {', '.join(table)}")
    print(
        f"DNSMOS P.835 OVRL (mean ± sd over {args.seeds} noise draws or block phases) / P.808, "
        f"{args.snr:g} dB SNR, dsp {PRESET}"
        + ("" if args.floor is None else f", clean over a {args.floor:g} dBFS hiss floor")
        + f"; speech: {stuff.name}\n"
    )
    print("| variant | what | " + " | ".join(["clean", *noisy]) + " | mean of the noisy |")
    print("|---" * (4 + len(noisy)) + "|")
    for name in args.names or list(table):
        what, run = table[name]
        t0 = time.perf_counter()
        cells, means, distances = [], [], []
        for label, xs in {"clean": phases, **noisy}.items():
            outputs = [run(x) for x in xs]
            scores = np.array([vq.dnsmos(y) for y in outputs])
            mean = scores.mean(axis=0)
            cell = f"{mean[0]:.2f} ± {scores[:, 0].std():.2f} / {mean[3]:.2f}"
            if pitch_refs:
                semitones = 0.0 if name in UNCONVERTED else shift
                errors = [
                    pitch_error(y, f, semitones)
                    for y, f in zip(outputs, pitch_refs[label], strict=True)
                ]
                off, lost = np.mean(errors, axis=0)
                cell += f" / {100 * off:.0f} % off, {100 * lost:.0f} % lost"
            if label != "clean":
                means.append(mean)
                if reference is not None:
                    lsd = float(np.mean([envelope_distance(y, reference) for y in outputs]))
                    distances.append(lsd)
                    cell += f" / {lsd:.2f} dB"
                    bias = band_bias(outputs[0], reference)[::4]
                    print(
                        f"  ({name}, {label}, draw 0: band bias dB {np.round(bias, 1)})",
                        file=sys.stderr,
                    )
            cells.append(cell)
        mean = np.mean(means, axis=0) if means else None
        summary = "-" if mean is None else f"{mean[0]:.3f} / {mean[3]:.3f}"
        if distances:
            summary += f" / {np.mean(distances):.2f} dB"
        print(f"| {name} | {what} | " + " | ".join(cells) + f" | {summary} |", flush=True)
        print(f"  ({name}: {time.perf_counter() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
