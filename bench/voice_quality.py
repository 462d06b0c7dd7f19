"""Voice on noisy microphones: DNSMOS of the converted voice with and without the
suppressor + gate in front (mirage/engine/voicechain.py), its delay and its cost.

    python bench/voice_quality.py                 # dsp bright, 20/10/5 dB, one core
    python bench/voice_quality.py --preset deep --snr 10
    python bench/voice_quality.py --speech audio_data/librispeech_train-clean-100

Needs the bench extra: ``pip install -e ".[bench]"`` (speechmos, librosa).

Clean speech is espeak-ng (a male and a female voice, ~12 s), or with ``--speech DIR``
recorded speech (a woman's and a man's utterance, 10-16 s each, from a folder such as
LibriSpeech's train-clean; see ``recorded_material``); the noises are made here:
babble (six other voices saying other sentences, offset in time),
music (chords of harmonic tones with a beat and noise-burst drums) and a fan
(pink noise + a 120 Hz motor hum with harmonics), each mixed at the SNR over the
whole clip. Everything runs at 16 kHz, the dsp voice's rate, block by block.

Quality: DNSMOS P.835 (OVRL, SIG, BAK) from PyPI's ``speechmos``; its second,
independent model DNSMOS P.808 (one MOS) is printed beside it: the two are
different networks, so they can disagree. Speaker similarity: cosine of
``resemblyzer`` embeddings against the converted clean speech (skipped when not
installed). Delay: the cross-correlation peak of output against input, next to
the ``latency_s`` the chain reports. RTF: wall time and the process's CPU time
over the audio's length, pinned to one core. A "where the OVRL goes" table scores
each 10 dB input after each stage (suppressor, + gate and shelf, + dsp) beside the
target and dsp's score on clean speech. A "candidates" table compares the
suppressors that ship their model in a PyPI package (RNNoise when ``pyrnnoise``
is installed, Speex's when ``speexdsp-ns`` is).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirage.engine.denoise import DEFAULT_LEVEL, FrameSuppressor
from mirage.engine.strength import StrengthTiming
from mirage.engine.voicechain import CleanVoice
from mirage.models import VoiceConverter, create_converter
from mirage.models.voice.passthrough import PassthroughConverter
from tests.speech import speech

RATE = 16000
SENTENCES = [
    ("en-us", 45, "Please call Stella. Ask her to bring these things with her from the store."),
    ("en-us+f3", 60, "Six spoons of fresh snow peas, five thick slabs of blue cheese."),
]
BABBLE = [
    ("en-us", 30, "We also need a small plastic snake and a big toy frog for the kids."),
    ("en-gb", 50, "She can scoop these things into three red bags, and we will go meet her."),
    ("en-us+f2", 70, "Wednesday at the train station, around four in the afternoon."),
    ("en-us+m3", 40, "The birch canoe slid on the smooth planks of the old wooden pier."),
    ("en-gb+f4", 65, "Glue the sheet to the dark blue background before the paint dries."),
    ("en-us+m5", 55, "It is easy to tell the depth of a well by dropping a small stone."),
]


# -- material ---------------------------------------------------------------------------
Noise = Callable[[int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Material:
    """The clean speech the bench converts and the noises it mixes into it."""

    name: str
    clean: np.ndarray
    noises: dict[str, Noise]


def espeak_speech() -> np.ndarray:
    parts = [np.zeros(RATE // 2, np.float32)]
    for voice, pitch, text in SENTENCES:
        parts += [speech(text, voice=voice, pitch=pitch), np.zeros(RATE // 2, np.float32)]
    x = np.concatenate(parts)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def espeak_babble(n: int, rng: np.random.Generator) -> np.ndarray:
    voices = [
        np.asarray(speech(text, voice=voice, pitch=pitch, speed=170), np.float64)
        for voice, pitch, text in BABBLE
    ]
    return babble_of(voices, n, rng)


def babble_of(voices: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """The voices, each looped from a random start and brought to unit power, summed."""
    out = np.zeros(n, np.float64)
    for s in voices:
        s = np.tile(s, n // len(s) + 2)
        start = int(rng.integers(0, len(s) - n))
        out += s[start : start + n] / (np.std(s) + 1e-9)
    return out.astype(np.float32)


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    out = np.zeros(n)
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6)]
    beat = int(0.5 * RATE)
    for i, start in enumerate(range(0, n, beat)):
        seg = slice(start, min(n, start + beat))
        tt = t[seg] - t[start]
        env = np.exp(-3.0 * tt)
        for f in chords[(i // 4) % len(chords)]:
            for k in range(1, 6):
                out[seg] += env * np.sin(2 * np.pi * f * k * t[seg]) / k**1.5
        drum = min(n, start + 800)
        out[start:drum] += (
            2.0 * rng.standard_normal(drum - start) * np.exp(-np.arange(drum - start) / 150)
        )
    return out.astype(np.float32)


def fan(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / RATE), 50.0))
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 6))
    return (noise / noise.std() + 0.3 * hum / hum.std()).astype(np.float32)


def espeak_material() -> Material:
    return Material(
        "espeak-ng", espeak_speech(), {"babble": espeak_babble, "music": music, "fan": fan}
    )


# A recording's pitch decides which voice it is: women's median F0 above this, men's
# below the other (WORLD's DIO); clips between are left out of the clean speech.
FEMALE_F0 = 165.0
MALE_F0 = 135.0
CLIP_S = (10.0, 16.0)
BABBLERS = 6


def recorded_material(folder: Path, pair: int = 0) -> Material:
    """Real recorded speech: one utterance per file (LibriSpeech's layout, .flac or .wav
    at 16 kHz), taken in file-name order, nothing picked by score. The clean speech is
    the ``pair``-th woman's clip then the ``pair``-th man's (10-16 s each, 0.5 s of
    silence around them); the babble is six other speakers' clips of that length."""
    import pyworld
    import soundfile

    files = sorted(p for p in folder.rglob("*") if p.suffix in (".flac", ".wav"))
    clips: list[tuple[str, np.ndarray, float]] = []
    for path in files:
        x, rate = soundfile.read(path, dtype="float64")
        if x.ndim > 1:
            x = x.mean(axis=1)
        if rate != RATE:
            x = soxr.resample(x, rate, RATE)
        if not CLIP_S[0] <= len(x) / RATE <= CLIP_S[1]:
            continue
        f0, _ = pyworld.dio(x, RATE)
        voiced = f0[f0 > 0]
        clips.append((path.stem, x, float(np.median(voiced)) if len(voiced) else 0.0))
    women = [c for c in clips if c[2] >= FEMALE_F0]
    men = [c for c in clips if 0 < c[2] <= MALE_F0]
    if len(women) <= pair or len(men) <= pair:
        raise SystemExit(f"{folder}: too few 10-16 s clips of a woman and a man for pair {pair}")
    speakers = [women[pair], men[pair]]
    others = [c for c in clips if all(c[0] != s[0] for s in speakers)][:BABBLERS]
    if len(others) < BABBLERS:
        raise SystemExit(f"{folder}: {BABBLERS} more clips needed for the babble")
    silence = np.zeros(RATE // 2)
    x = np.concatenate([silence, speakers[0][1], silence, speakers[1][1], silence])
    clean = (0.3 * x / np.max(np.abs(x))).astype(np.float32)
    voices = [c[1] for c in others]

    def babble(n: int, rng: np.random.Generator) -> np.ndarray:
        return babble_of(voices, n, rng)

    name = f"recorded: {speakers[0][0]} (F0 {speakers[0][2]:.0f} Hz) + {speakers[1][0]} "
    name += f"(F0 {speakers[1][2]:.0f} Hz); babble {', '.join(c[0] for c in others)}"
    return Material(name, clean, {"babble": babble, "music": music, "fan": fan})


def material(folder: Path | None, pair: int = 0) -> Material:
    return espeak_material() if folder is None else recorded_material(folder, pair)


def add_material_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speech",
        type=Path,
        default=None,
        help="a folder of recorded utterances (e.g. LibriSpeech's train-clean .flac) to use "
        "instead of espeak-ng",
    )
    parser.add_argument("--pair", type=int, default=0, help="which woman + man of --speech")


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean`` plus ``noise`` scaled to ``snr_db`` (speech power over its active part)."""
    active = clean[np.abs(clean) > 1e-4]
    gain = np.sqrt(np.mean(active**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    x = clean + gain * noise
    peak = float(np.max(np.abs(x)))
    return (x / peak * 0.9 if peak > 0.9 else x).astype(np.float32)


# -- measuring ---------------------------------------------------------------------------
def run_stream(converter: VoiceConverter, x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Output (aligned: its reported latency removed), wall and CPU seconds."""
    size = converter.block_size
    pad = round(converter.latency_s * RATE)
    x = np.concatenate([x, np.zeros(pad + size, np.float32)])
    n = len(x) // size * size
    blocks = []
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, size):
        blocks.append(converter.convert(x[i : i + size]))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    y = np.concatenate(blocks)
    return y[pad : pad + n - pad - size], wall, cpu


def dnsmos(x: np.ndarray) -> tuple[float, float, float, float]:
    from speechmos import dnsmos as model

    r = model.run(np.clip(x, -1, 1).astype(np.float64), RATE)
    return r["ovrl_mos"], r["sig_mos"], r["bak_mos"], r["p808_mos"]


class Similarity:
    """Cosine of resemblyzer speaker embeddings (None when it is not installed)."""

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError:
            self.encoder = None
            return
        self.encoder = VoiceEncoder("cpu", verbose=False)
        self._prep = preprocess_wav

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float | None:
        if self.encoder is None:
            return None
        ea = self.encoder.embed_utterance(self._prep(a.astype(np.float32), RATE))
        eb = self.encoder.embed_utterance(self._prep(b.astype(np.float32), RATE))
        return float(np.dot(ea, eb) / (np.linalg.norm(ea) * np.linalg.norm(eb)))


def lag_ms(x: np.ndarray, y: np.ndarray) -> float:
    n = len(x) + len(y)
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    return float(np.argmax(corr[: RATE // 10])) / RATE * 1000


def raw_stream(converter: VoiceConverter, x: np.ndarray) -> np.ndarray:
    size = converter.block_size
    n = len(x) // size * size
    return np.concatenate([converter.convert(x[i : i + size]) for i in range(0, n, size)])


# -- the suppressor candidates -------------------------------------------------------------
def webrtc_candidate(level: int, full: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """WebRTC NS alone: at full strength (the candidate) or as the chain runs it
    (``full=False``: its strength follows the input's SNR)."""
    timing = StrengthTiming(noisy_db=1e3, clean_db=1e3 + 1) if full else StrengthTiming()

    def run(x: np.ndarray) -> np.ndarray:
        ns = FrameSuppressor(level, timing)
        n = len(x) // 160 * 160
        return np.concatenate([ns(x[i : i + 160])[0] for i in range(0, n, 160)])

    return run


def rnnoise_candidate() -> Callable[[np.ndarray], np.ndarray] | None:
    """RNNoise through the library ``pyrnnoise`` ships (48 kHz, 10 ms frames); its
    Python wrapper needs audiolab, so the library is called directly."""
    spec = importlib.util.find_spec("pyrnnoise")
    if spec is None or not spec.submodule_search_locations:
        return None
    lib = ctypes.CDLL(os.path.join(next(iter(spec.submodule_search_locations)), "librnnoise.so"))
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    ptr = ctypes.POINTER(ctypes.c_float)
    lib.rnnoise_process_frame.restype = ctypes.c_float
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ptr, ptr]

    def run(x: np.ndarray) -> np.ndarray:
        up = soxr.resample(x, RATE, 48000).astype(np.float32) * 32768.0
        state = lib.rnnoise_create(None)
        out = np.zeros_like(up)
        for i in range(0, len(up) // 480 * 480, 480):
            frame = np.ascontiguousarray(up[i : i + 480])
            dst = np.empty(480, np.float32)
            lib.rnnoise_process_frame(state, dst.ctypes.data_as(ptr), frame.ctypes.data_as(ptr))
            out[i : i + 480] = dst
        lib.rnnoise_destroy(state)
        return soxr.resample(out / 32768.0, 48000, RATE).astype(np.float32)

    return run


def speex_candidate() -> Callable[[np.ndarray], np.ndarray] | None:
    """Speex's noise suppressor (PyPI ``speexdsp-ns``, the library inside the wheel), in
    10 ms frames at the voice's rate; ``None`` when it is not installed (it is not a
    dependency: measured, not chosen)."""
    if importlib.util.find_spec("speexdsp_ns") is None:
        return None
    from speexdsp_ns import NoiseSuppression

    def run(x: np.ndarray) -> np.ndarray:
        ns = NoiseSuppression.create(160, RATE)
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
        n = len(pcm) // 160 * 160
        frames = [ns.process(pcm[i : i + 160].tobytes()) for i in range(0, n, 160)]
        return np.frombuffer(b"".join(frames), dtype=np.int16).astype(np.float32) / 32768.0

    return run


def candidates(clean: np.ndarray, noisy10: dict[str, np.ndarray]) -> list[str]:
    rows = []
    found: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        (
            f"WebRTC NS level {lv}" + (" (default)" if lv == DEFAULT_LEVEL else ""),
            webrtc_candidate(lv),
        )
        for lv in (1, 2, 3, 4)
    ]
    rnn = rnnoise_candidate()
    if rnn is not None:
        found.append(("RNNoise (pyrnnoise)", rnn))
    speex = speex_candidate()
    if speex is not None:
        found.append(("Speex NS (speexdsp-ns)", speex))
    for name, run in found:
        t0 = time.process_time()
        out_clean = run(clean)
        rtf = (time.process_time() - t0) / (len(clean) / RATE)
        delay = lag_ms(clean[: len(out_clean)], out_clean)
        scores = [dnsmos(run(x))[0] for x in noisy10.values()]
        rows.append(
            f"| {name} | {delay:.1f} | {np.mean(scores):.2f} | "
            + " | ".join(f"{s:.2f}" for s in scores)
            + f" | {dnsmos(out_clean)[0]:.2f} | {rtf:.4f} |"
        )
    return rows


def stages(clean: np.ndarray, noisy10: dict[str, np.ndarray], level: int, preset: str) -> list[str]:
    """Where the OVRL goes: each input after each stage of the chain, and the target
    (noisy input + 0.5) beside the converter's own score on clean speech."""
    ref, _, _ = run_stream(create_converter("dsp", preset=preset), clean)
    ceiling = dnsmos(ref)[0]
    rows = []
    for name, x in {"clean": clean, **noisy10}.items():
        s_in = dnsmos(x)[0]
        ns = dnsmos(webrtc_candidate(level, full=False)(x))[0]
        gated, _, _ = run_stream(CleanVoice(PassthroughConverter(RATE, 10.0), level), x)
        chain, _, _ = run_stream(CleanVoice(create_converter("dsp", preset=preset), level), x)
        s_gate, s_chain = dnsmos(gated)[0], dnsmos(chain)[0]
        target = "-" if name == "clean" else f"{s_in + 0.5:.2f}"
        rows.append(
            f"| {name} | {s_in:.2f} | {ns:.2f} | {s_gate:.2f} | {s_chain:.2f} | "
            f"{s_chain - s_gate:+.2f} | {target} | {ceiling:.2f} |"
        )
    return rows


# -- the table --------------------------------------------------------------------------
def fmt(scores: tuple[float, float, float, float]) -> str:
    """One cell: OVRL / SIG / BAK / P.808."""
    return " / ".join(f"{s:.2f}" for s in scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="bright", help="dsp preset to convert with")
    parser.add_argument("--snr", type=float, nargs="+", default=[20.0, 10.0, 5.0])
    parser.add_argument("--level", default="on", help="the denoise option (on, low..max)")
    parser.add_argument("--no-candidates", action="store_true")
    parser.add_argument("--all-cores", action="store_true")
    add_material_arguments(parser)
    args = parser.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from mirage.engine.denoise import parse_denoise

    level = parse_denoise(args.level)
    rng = np.random.default_rng(7)
    stuff = material(args.speech, args.pair)
    clean = stuff.clean
    noises = {name: make(len(clean), rng) for name, make in stuff.noises.items()}
    similarity = Similarity()
    seconds = len(clean) / RATE

    def bare() -> VoiceConverter:
        return create_converter("dsp", preset=args.preset)

    def chain() -> CleanVoice:
        return CleanVoice(create_converter("dsp", preset=args.preset), level)

    ref, _, _ = run_stream(bare(), clean)  # the converted clean speech
    ref_scores = dnsmos(ref)
    rows = [
        "| input | SNR dB | input OVRL / SIG / BAK / P.808 | dsp alone | dsp + suppressor & gate "
        "| Δ OVRL vs input | Δ OVRL vs clean converted | similarity alone / with |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with_clean, wall, cpu = run_stream(chain(), clean)
    s_clean = dnsmos(with_clean)
    rows.append(
        f"| clean | ∞ | {fmt(dnsmos(clean))} | {fmt(ref_scores)} | {fmt(s_clean)} | "
        f"{s_clean[0] - dnsmos(clean)[0]:+.2f} | {s_clean[0] - ref_scores[0]:+.2f} | "
        f"1.00 / {_sim(similarity(ref, with_clean))} |"
    )
    noisy10: dict[str, np.ndarray] = {}
    for snr in args.snr:
        for name, noise in noises.items():
            x = mix(clean, noise, snr)
            if snr == 10.0:
                noisy10[name] = x
            s_in = dnsmos(x)
            alone, _, _ = run_stream(bare(), x)
            cleaned, _, _ = run_stream(chain(), x)
            s_alone, s_with = dnsmos(alone), dnsmos(cleaned)
            rows.append(
                f"| {name} | {snr:g} | {fmt(s_in)} | {fmt(s_alone)} | {fmt(s_with)} | "
                f"{s_with[0] - s_in[0]:+.2f} | {s_with[0] - ref_scores[0]:+.2f} | "
                f"{_sim(similarity(ref, alone))} / {_sim(similarity(ref, cleaned))} |"
            )
    print(f"dsp preset={args.preset}, denoise level {level}, {seconds:.1f} s of speech at 16 kHz")
    print(f"speech: {stuff.name}")
    print("scores: DNSMOS P.835 OVRL / SIG / BAK, then DNSMOS P.808 (a second model)\n")
    print("\n".join(rows))

    # Delay: measured (cross-correlation) against reported, for the chain alone and with dsp.
    print("\n| chain | reported delay ms | measured ms (cross-correlation) |")
    print("|---|---|---|")
    voice = np.concatenate([np.zeros(RATE // 2, np.float32), clean])
    for label, inner in (
        ("suppressor only (16 kHz, 10 ms blocks)", PassthroughConverter(RATE, 10.0)),
        ("suppressor only (16 kHz, 5 ms blocks)", PassthroughConverter(RATE, 5.0)),
        ("suppressor only (48 kHz, 20 ms blocks)", None),
        (
            "dsp neutral (160 ms) + suppressor: whole latency_s",
            create_converter("dsp", preset="neutral"),
        ),
    ):
        if inner is None:
            c48 = CleanVoice(PassthroughConverter(48000, 20.0), level)
            v48 = soxr.resample(voice, RATE, 48000).astype(np.float32)
            out48 = raw_stream(c48, v48)
            n = len(out48)
            corr = np.fft.irfft(
                np.fft.rfft(out48, 2 * n) * np.conj(np.fft.rfft(v48[:n], 2 * n)), 2 * n
            )
            measured = float(np.argmax(corr[:4800])) / 48
            print(f"| {label} | {c48.delay_s * 1000:.2f} | {measured:.2f} |")
            continue
        c = CleanVoice(inner, level)
        reported = c.latency_s if "dsp" in label else c.delay_s
        print(f"| {label} | {reported * 1000:.2f} | {lag_ms(voice, raw_stream(c, voice)):.2f} |")

    # Cost on one core, and the gate's open share (background only vs speech).
    c = chain()
    _, wall_bare, cpu_bare = run_stream(bare(), clean)
    only = CleanVoice(PassthroughConverter(RATE, 160.0), level)
    _, wall_ns, cpu_ns = run_stream(only, clean)
    print("\n| one core | RTF wall | RTF CPU |")
    print("|---|---|---|")
    print(f"| suppressor + gate alone | {wall_ns / seconds:.4f} | {cpu_ns / seconds:.4f} |")
    print(f"| dsp alone | {wall_bare / seconds:.4f} | {cpu_bare / seconds:.4f} |")
    print(f"| whole chain (suppressor + gate + dsp) | {wall / seconds:.4f} | {cpu / seconds:.4f} |")
    run_stream(c, noises["fan"][: RATE * 8] * 0.05)
    fan_share = c.gate_open_share
    c2 = chain()
    run_stream(c2, clean)
    print(
        f"\ngate open share: fan alone {fan_share:.3f}; clean speech {c2.gate_open_share:.3f} "
        f"(speech active {np.mean(_active(clean)):.3f} of the clip, 10 ms frames)"
    )
    if noisy10:
        print("\nWhere the OVRL goes (DNSMOS P.835 OVRL after each stage; 10 dB SNR):\n")
        print(
            "| clip | input | suppressor | suppressor + gate | + dsp (the chain) "
            "| the converter's share | target (input + 0.5) | dsp on clean speech |"
        )
        print("|---" * 8 + "|")
        print("\n".join(stages(clean, noisy10, level, args.preset)))
    if not args.no_candidates and noisy10:
        print("\nSuppressors alone (no converter, no gate), noisy inputs at 10 dB SNR:\n")
        print(
            "| suppressor | delay ms | OVRL mean at 10 dB | "
            + " | ".join(noisy10)
            + " | OVRL on clean | CPU RTF |"
        )
        print("|---" * (5 + len(noisy10)) + "|")
        print("\n".join(candidates(clean, noisy10)))
    print(f"\n(load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f})")


def _active(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    power = np.mean(frames**2, axis=1)
    return power > np.max(power) * 1e-4


def _sim(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
