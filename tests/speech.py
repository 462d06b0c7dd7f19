"""Real speech for the voice tests, made with espeak-ng (a Debian package).

espeak-ng is a formant synthesiser, so its voice has a clear pitch contour,
voiced and unvoiced sounds, pauses and formants: what the converters must keep
or change. Results are cached for the test session (the process).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np
import soundfile as sf
import soxr

RATE = 16000
SENTENCE = (
    "The quick brown fox jumps over the lazy dog. "
    "Mirage changes every voice in real time, while you speak."
)


@functools.lru_cache(maxsize=16)
def _speak(text: str, voice: str, pitch: int, speed: int, rate: int) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng")
    wav = subprocess.run(
        [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    audio, native = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    out = soxr.resample(mono, native, rate, quality="HQ") if native != rate else mono
    out = np.ascontiguousarray(out, dtype=np.float32)
    out.setflags(write=False)  # shared through the cache: nobody may change it
    return out


def speech(
    text: str = SENTENCE,
    voice: str = "en-us",
    pitch: int = 50,
    speed: int = 160,
    rate: int = RATE,
) -> np.ndarray:
    """``text`` spoken by espeak-ng as mono float32 at ``rate`` (read-only, cached).

    ``voice`` is an espeak-ng voice (``en-us``, ``en-us+f3`` for a female
    variant), ``pitch`` its 0-99 pitch setting, ``speed`` words per minute.
    """
    return _speak(text, voice, pitch, speed, rate)
