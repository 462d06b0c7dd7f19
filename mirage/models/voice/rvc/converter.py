"""The ``rvc`` VoiceConverter: 16 kHz in, 16 kHz out, one block at a time.

Each block (100 ms by default: 10 HuBERT-aligned frames) joins a sliding window of
``context + crossfade + search + block`` input samples. Content features are computed over the whole window (HuBERT needs context),
pitch is re-tracked only for the newest audio, and the synthesizer decodes just the
newest ``block + crossfade + search`` (plus a few frames of warm-up that are dropped),
as upstream's realtime path does. The model's 32/40/48 kHz output is resampled to
16 kHz, its loudness envelope follows the input's (``rms_mix_rate``), and consecutive
chunks are joined by SOLA so seams do not click. The decoded chunk ends on the newest
input sample, so the stream lags the input by ``latency_s`` = crossfade + search
(50 ms by default) on top of the caller's block buffering: 150 ms in all (was 160 ms
blocks and a ``latency_s`` that counted the block a second time). ``convert_offline`` runs the same
stages over a whole signal at once: the reference the stream should match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirage.models.base import BadInput, VoiceConverter
from mirage.models.checkpoint import BadCheckpoint
from mirage.models.voice.rvc.checkpoint import (
    INDEX_FILE,
    MODEL_FILE,
    RMVPE_FILE,
    load_synthesizer,
)
from mirage.models.voice.rvc.files import HUBERT_FILE
from mirage.models.voice.rvc.hubert import load_content_encoder
from mirage.models.voice.rvc.index import FeatureIndex
from mirage.models.voice.rvc.pitch import (
    HOP,
    RATE,
    StreamingPitch,
    coarse_pitch,
    fill_unvoiced,
    make_tracker,
    shift,
)
from mirage.models.voice.rvc.synthesizer import DEFAULT_NOISE_SCALE
from mirage.models.voice.sola import SolaStream
from mirage.weights import models_dir as resolve_models_dir

#: Frames decoded before the chunk and thrown away: the decoder's convolutions and the
#: resampler start cold at a chunk's left edge.
WARMUP_FRAMES = 4
#: Loudness envelope window (samples at 16 kHz), upstream's 4 × 10 ms.
RMS_WINDOW = 4 * HOP


@dataclass(frozen=True)
class StreamLayout:
    """Window geometry in 10 ms frames (160 samples at 16 kHz); block and window are even."""

    block: int
    crossfade: int
    search: int
    context: int

    @classmethod
    def from_ms(
        cls, block_ms: float, crossfade_ms: float, search_ms: float, context_s: float
    ) -> StreamLayout:
        crossfade, search = round(crossfade_ms / 10), round(search_ms / 10)
        context = round(context_s * 100)
        context += (context + crossfade + search) % 2
        # HuBERT frames are 20 ms: an even block and window keep its frame grid on the
        # same absolute times in every window (and in an offline pass).
        layout = cls(2 * round(block_ms / 20), crossfade, search, context)
        if not 2 <= layout.block <= 100:
            raise BadInput(f"block_ms must be 20..1000 ms, got {block_ms}")
        if not 0 < layout.crossfade <= layout.block:
            raise BadInput(f"crossfade_ms must be 10 ms..block_ms, got {crossfade_ms}")
        if layout.search < 0:
            raise BadInput(f"search_ms must be ≥ 0, got {search_ms}")
        if layout.context < WARMUP_FRAMES:
            raise BadInput(f"context_s must be ≥ {WARMUP_FRAMES / 100} s, got {context_s}")
        return layout

    @property
    def chunk(self) -> int:
        """Frames decoded per block and handed to SOLA: block + crossfade + search."""
        return self.block + self.crossfade + self.search

    @property
    def window(self) -> int:
        """Frames of input the content encoder sees per block."""
        return self.context + self.chunk


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _envelope(x: np.ndarray) -> np.ndarray:
    """Moving RMS over ``RMS_WINDOW`` samples, centred, averaging fewer at the edges."""
    sq = np.concatenate(([0.0], np.cumsum(np.square(x, dtype=np.float64))))
    idx = np.arange(len(x))
    lo = np.clip(idx - RMS_WINDOW // 2, 0, len(x))
    hi = np.clip(idx + RMS_WINDOW // 2, 0, len(x))
    return np.sqrt(np.maximum(sq[hi] - sq[lo], 0.0) / np.maximum(hi - lo, 1))


class RvcConverter(VoiceConverter):
    """RVC v1/v2 voice conversion as a streaming ``VoiceConverter`` at 16 kHz.

    Options: ``semitones`` shifts the pitch; ``index_rate`` mixes in features retrieved
    from ``rvc/features.index`` when it exists; ``rms_mix_rate`` 0 gives the output the
    input's loudness envelope (upstream realtime default), 1 keeps the model's;
    ``noise_scale``/``nsf_noise_scale`` scale the sampling noise (0 = deterministic).
    """

    sample_rate = RATE

    def __init__(
        self,
        models_dir: str | None = None,
        model: str = MODEL_FILE,
        semitones: float = 0.0,
        index_rate: float = 0.5,
        block_ms: float = 100.0,
        context_s: float = 1.0,
        crossfade_ms: float = 40.0,
        search_ms: float = 10.0,
        device: str = "auto",
        noise_scale: float = DEFAULT_NOISE_SCALE,
        nsf_noise_scale: float = 1.0,
        rms_mix_rate: float = 0.0,
        speaker: int = 0,
        pitch: str = "auto",
        sample_rate: int = RATE,
    ) -> None:
        if sample_rate != RATE:
            raise BadInput(
                f"rvc works at {RATE} Hz; resample first (got sample_rate={sample_rate})"
            )
        if not 0.0 <= index_rate <= 1.0 or not 0.0 <= rms_mix_rate <= 1.0:
            raise BadInput("index_rate and rms_mix_rate must be within 0..1")
        self.layout = StreamLayout.from_ms(block_ms, crossfade_ms, search_ms, context_s)
        self.block_size = self.layout.block * HOP
        # Each chunk ends on the newest input sample and SOLA emits it crossfade + search
        # later (offset 0 on settled audio): the delay beyond the caller's block.
        self.latency_s = (self.layout.crossfade + self.layout.search) * HOP / RATE
        self.semitones = semitones
        self.index_rate = index_rate
        self.rms_mix_rate = rms_mix_rate
        self.device = _device(device)
        root = resolve_models_dir(models_dir)
        self.synth, self.info = load_synthesizer(
            root / model, noise_scale=noise_scale, nsf_noise_scale=nsf_noise_scale
        )
        if not 0 <= speaker < self.info.speakers:
            raise BadInput(
                f"speaker {speaker} out of range: {root / model} has {self.info.speakers}"
            )
        self.synth.to(self.device)
        self.encoder = load_content_encoder(root / HUBERT_FILE, self.info.version).to(self.device)
        wanted = self.synth.enc_p.emb_phone.in_features
        if self.encoder.dim != wanted:
            raise BadCheckpoint(
                f"{root / HUBERT_FILE} gives {self.encoder.dim}-dim features; "
                f"{root / model} ({self.info.version}) wants {wanted}"
            )
        self.tracker = make_tracker(root / RMVPE_FILE, self.device, pitch)
        index_file = root / INDEX_FILE
        self.index = FeatureIndex(index_file, self.encoder.dim) if index_file.is_file() else None
        self._sid = torch.tensor([speaker], device=self.device)
        self._sola = SolaStream(
            self.block_size, self.layout.crossfade * HOP, self.layout.search * HOP
        )
        self._pitch = StreamingPitch(self.tracker, self.layout.window)
        self._wav = np.zeros(self.layout.window * HOP, dtype=np.float32)

    def reset(self) -> None:
        """Forget the stream: the next block starts from silence."""
        self._wav[:] = 0.0
        self._pitch.reset()
        self._sola.reset()

    def convert(self, block: np.ndarray) -> np.ndarray:
        """Convert the next ``block_size`` samples; returns as many, ``latency_s`` behind."""
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        if len(x) != self.block_size:
            raise BadInput(f"rvc wants blocks of {self.block_size} samples, got {len(x)}")
        if not np.all(np.isfinite(x)):
            raise BadInput("audio block holds NaN or infinite samples")
        self._wav = np.concatenate((self._wav[len(x) :], x))
        f0 = self._pitch.update(self._wav, self.layout.block)
        lay = self.layout
        head = lay.context - WARMUP_FRAMES
        audio = self._synthesize(self._wav, f0, head, lay.chunk + WARMUP_FRAMES)
        audio = self._match_loudness(self._wav[-len(audio) :], audio)
        return self._sola.push(audio[WARMUP_FRAMES * HOP :])

    def convert_offline(self, audio: np.ndarray) -> np.ndarray:
        """Convert a whole 16 kHz signal in one pass (same length out, no added delay)."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        frames = len(x) // HOP
        if frames < 2:
            raise BadInput(f"need at least {2 * HOP} samples, got {len(x)}")
        x = x[: frames * HOP]
        f0 = fill_unvoiced(self.tracker(x))[:frames]
        out = self._synthesize(x, f0, None, None)
        return self._match_loudness(x, out)

    @torch.inference_mode()
    def _synthesize(
        self, wav: np.ndarray, f0: np.ndarray, head: int | None, length: int | None
    ) -> np.ndarray:
        """Window (frames × 160 samples) + its f0 → 16 kHz audio of frames ``head..+length``."""
        frames = len(wav) // HOP
        feats = self.encoder(torch.from_numpy(wav)[None].to(self.device))[0]
        if self.index is not None and self.index_rate > 0:
            first = 0 if head is None else head // 2
            blended = self.index.blend(feats[first:].float().cpu().numpy(), self.index_rate)
            feats = feats.clone()
            feats[first:] = torch.from_numpy(blended).to(feats)
        # 50 → 100 frames/s, padded with the last frame to one per 10 ms, as upstream
        feats = feats.repeat_interleave(2, dim=0)
        pad = frames - feats.shape[0]
        if pad > 0:
            feats = torch.cat((feats, feats[-1:].expand(pad, -1)))
        phone = feats[None, :frames]
        f0s = shift(f0, self.semitones)
        pitch = torch.from_numpy(coarse_pitch(f0s))[None].to(self.device)
        nsff0 = torch.from_numpy(f0s.astype(np.float32))[None].to(self.device)
        lengths = torch.tensor([frames], device=self.device)
        out, _, _ = self.synth.infer(phone, lengths, pitch, nsff0, self._sid, head, length)
        native = out[0, 0].float().cpu().numpy()
        import soxr  # here: the stream geometry above is usable where soxr is absent

        resampled = soxr.resample(native, self.info.sample_rate, RATE, quality="HQ")
        expected = (frames if length is None else length) * HOP
        resampled = resampled[:expected]
        return np.pad(resampled, (0, expected - len(resampled))).astype(np.float32)

    def _match_loudness(self, source: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Scale ``out`` toward ``source``'s loudness envelope by ``1 - rms_mix_rate``."""
        if self.rms_mix_rate >= 1.0:
            return out
        gain = (_envelope(source) / np.maximum(_envelope(out), 1e-3)) ** (1.0 - self.rms_mix_rate)
        return (out * gain).astype(np.float32)

    @property
    def model_path(self) -> Path:
        return self.info.path
