"""Seam-free joining of independently converted blocks (SOLA).

A block-wise converter (WORLD resynthesis, RVC) converts each block with some
context, so consecutive outputs overlap in time but not in phase: butting them
together clicks. Synchronous overlap-add fixes that: every push carries the
newest block plus a tail of ``crossfade + search`` samples; the tail's first
``crossfade`` samples are kept, and the next push is shifted by the offset in
``[0, search]`` where it best matches that kept tail (normalised
cross-correlation), then cross-faded into it. The output stream therefore lags
the converted stream by at most ``crossfade + search`` samples.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-8


def _fade_in(n: int) -> np.ndarray:
    """Raised-cosine fade-in; ``1 - fade_in`` is its fade-out."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return np.sin(0.5 * np.pi * t) ** 2


def best_offset(head: np.ndarray, tail: np.ndarray, search: int) -> int:
    """Offset in ``[0, search]`` where ``head`` best matches ``tail`` (normalised xcorr).

    ``head`` holds ``len(tail) + search`` samples. A silent tail (nothing to
    match) gives offset 0.
    """
    n = len(tail)
    tail64 = tail.astype(np.float64)
    if search <= 0 or not np.any(tail64):
        return 0
    head64 = head[: n + search].astype(np.float64)
    num = np.correlate(head64, tail64, mode="valid")  # length search + 1
    energy = np.concatenate(([0.0], np.cumsum(head64 * head64)))
    den = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.0)) + _EPS
    return int(np.argmax(num / den))


def blend(head: np.ndarray, tail: np.ndarray, fade_in: np.ndarray) -> np.ndarray:
    """Cross-fade ``tail`` out and ``head`` in, keeping the loudness through the seam.

    A plain amplitude cross-fade assumes the two are in phase; when they are
    not (a pitch period longer than the search, a voicing change) it dips. So
    the fade is divided by its expected level for the measured correlation
    ``c`` and scaled to the level interpolated between the two sides: with
    ``c = 1`` this is the plain fade, with ``c = 0`` an equal-power one.
    """
    h, t = head.astype(np.float64), tail.astype(np.float64)
    fi = fade_in.astype(np.float64)
    fo = 1.0 - fi
    ph, pt = float(np.dot(h, h)), float(np.dot(t, t))
    mixed = h * fi + t * fo
    if ph <= _EPS or pt <= _EPS:  # one side silent: nothing can cancel
        return mixed.astype(np.float32)
    c = float(np.clip(np.dot(h, t) / np.sqrt(ph * pt), 0.0, 1.0))
    ah, at = np.sqrt(ph), np.sqrt(pt)
    expected = np.sqrt((fi * ah) ** 2 + (fo * at) ** 2 + 2.0 * c * fi * fo * ah * at)
    wanted = fi * ah + fo * at
    return (mixed * (wanted / np.maximum(expected, _EPS))).astype(np.float32)


class SolaStream:
    """Joins converted chunks of ``block_size + crossfade + search`` samples seam-free.

    Each ``push`` returns exactly ``block_size`` samples. The first push has no
    history to align with and is emitted as it came (offset 0).
    """

    def __init__(self, block_size: int, crossfade: int, search: int) -> None:
        if block_size <= 0 or crossfade < 0 or search < 0:
            raise ValueError(
                f"need block_size > 0, crossfade >= 0, search >= 0; "
                f"got {block_size}, {crossfade}, {search}"
            )
        if crossfade > block_size:
            raise ValueError(f"crossfade {crossfade} longer than the block {block_size}")
        self.block_size = block_size
        self.crossfade = crossfade
        self.search = search
        self.latency_samples = crossfade + search
        self._fade_in = _fade_in(crossfade)
        self._tail: np.ndarray | None = None

    @property
    def chunk_size(self) -> int:
        """Samples each ``push`` expects."""
        return self.block_size + self.crossfade + self.search

    def reset(self) -> None:
        """Forget the kept tail: the next push starts a new stream."""
        self._tail = None

    def push(self, converted: np.ndarray) -> np.ndarray:
        """Take one converted chunk, return the next ``block_size`` output samples."""
        chunk = np.asarray(converted, dtype=np.float32).reshape(-1)
        if len(chunk) != self.chunk_size:
            raise ValueError(
                f"SolaStream.push wants {self.chunk_size} samples "
                f"(block {self.block_size} + crossfade {self.crossfade} + search "
                f"{self.search}), got {len(chunk)}"
            )
        offset = 0
        if self._tail is not None and self.crossfade:
            offset = best_offset(chunk, self._tail, self.search)
        out = chunk[offset : offset + self.block_size].copy()
        if self._tail is not None and self.crossfade:
            xf = self.crossfade
            out[:xf] = blend(out[:xf], self._tail, self._fade_in)
        start = offset + self.block_size
        self._tail = chunk[start : start + self.crossfade].copy()
        return out
