"""RVC v1/v2 synthesizer with pitch (NSF) and speaker embedding, inference path only.

Content features (v1: 256-dim, v2: 768-dim) plus coarse pitch go through a transformer
prior encoder; a prior sample is mapped by the reversed flow to decoder latents, and the
NSF-HiFiGAN decoder renders audio at f0. The posterior encoder (``enc_q``) exists only
in training checkpoints and is not built. Randomness is two scales: ``noise_scale``
(prior sample; upstream 0.66666) and ``nsf_noise_scale`` (excitation noise; upstream 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mirage.models.voice.rvc.attentions import Encoder
from mirage.models.voice.rvc.coupling import CouplingFlow
from mirage.models.voice.rvc.nsf import GeneratorNSF

#: Upstream's prior temperature.
DEFAULT_NOISE_SCALE = 0.66666
#: Feature width of each model version.
PHONE_DIMS = {"v1": 256, "v2": 768}
_SAMPLE_RATES = {"32k": 32000, "40k": 40000, "48k": 48000}


@dataclass(frozen=True)
class SynthesizerConfig:
    """The 18 positional constructor values of an RVC checkpoint, by name."""

    spec_channels: int
    segment_size: int
    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    p_dropout: float
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    spk_embed_dim: int
    gin_channels: int
    sr: int

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> SynthesizerConfig:
        """Parse a checkpoint's ``config`` list; raises ``ValueError`` when malformed."""
        if len(values) != 18:
            raise ValueError(f"expected 18 config values, got {len(values)}")
        v = list(values)
        sr = _SAMPLE_RATES[v[17]] if isinstance(v[17], str) else int(v[17])
        return cls(
            spec_channels=int(v[0]),
            segment_size=int(v[1]),
            inter_channels=int(v[2]),
            hidden_channels=int(v[3]),
            filter_channels=int(v[4]),
            n_heads=int(v[5]),
            n_layers=int(v[6]),
            kernel_size=int(v[7]),
            p_dropout=float(v[8]),
            resblock=str(v[9]),
            resblock_kernel_sizes=tuple(int(k) for k in v[10]),
            resblock_dilation_sizes=tuple(tuple(int(d) for d in ds) for ds in v[11]),
            upsample_rates=tuple(int(r) for r in v[12]),
            upsample_initial_channel=int(v[13]),
            upsample_kernel_sizes=tuple(int(k) for k in v[14]),
            spk_embed_dim=int(v[15]),
            gin_channels=int(v[16]),
            sr=sr,
        )


class TextEncoder(nn.Module):
    """Content features + coarse pitch → prior mean and log-scale, with the length mask."""

    def __init__(self, phone_dim: int, cfg: SynthesizerConfig) -> None:
        super().__init__()
        self.hidden = cfg.hidden_channels
        self.out_channels = cfg.inter_channels
        self.emb_phone = nn.Linear(phone_dim, cfg.hidden_channels)
        self.emb_pitch = nn.Embedding(256, cfg.hidden_channels)
        self.encoder = Encoder(
            cfg.hidden_channels, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size
        )
        self.proj = nn.Conv1d(cfg.hidden_channels, cfg.inter_channels * 2, 1)

    def forward(
        self, phone: Tensor, pitch: Tensor, lengths: Tensor, skip_head: int = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        x = (self.emb_phone(phone) + self.emb_pitch(pitch)) * math.sqrt(self.hidden)
        x = torch.nn.functional.leaky_relu(x, 0.1).transpose(1, -1)  # (B, H, T)
        frames = torch.arange(x.shape[2], device=x.device)
        x_mask = (frames[None, :] < lengths[:, None]).unsqueeze(1).to(x.dtype)
        x = self.encoder(x * x_mask, x_mask)
        if skip_head:
            x, x_mask = x[:, :, skip_head:], x_mask[:, :, skip_head:]
        stats = self.proj(x) * x_mask
        m, logs = stats.split(self.out_channels, dim=1)
        return m, logs, x_mask


class Synthesizer(nn.Module):
    """``SynthesizerTrnMs256NSFsid`` (v1) / ``SynthesizerTrnMs768NSFsid`` (v2), weight-compatible.

    The state dict order matches upstream: v1 registers ``enc_p`` first, v2 last.
    """

    def __init__(
        self,
        cfg: SynthesizerConfig,
        version: str = "v2",
        noise_scale: float = DEFAULT_NOISE_SCALE,
        nsf_noise_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if version not in PHONE_DIMS:
            raise ValueError(f"unsupported RVC version {version!r} (expected v1 or v2)")
        self.cfg = cfg
        self.version = version
        self.noise_scale = noise_scale
        enc_p = TextEncoder(PHONE_DIMS[version], cfg)
        if version == "v1":
            self.enc_p = enc_p
        self.dec = GeneratorNSF(
            cfg.inter_channels,
            cfg.resblock,
            cfg.resblock_kernel_sizes,
            cfg.resblock_dilation_sizes,
            cfg.upsample_rates,
            cfg.upsample_initial_channel,
            cfg.upsample_kernel_sizes,
            cfg.gin_channels,
            cfg.sr,
            nsf_noise_scale,
        )
        self.flow = CouplingFlow(
            cfg.inter_channels, cfg.hidden_channels, 5, 1, 3, 4, cfg.gin_channels
        )
        self.emb_g = nn.Embedding(cfg.spk_embed_dim, cfg.gin_channels)
        if version == "v2":
            self.enc_p = enc_p

    @property
    def nsf_noise_scale(self) -> float:
        return self.dec.m_source.l_sin_gen.noise_scale

    @nsf_noise_scale.setter
    def nsf_noise_scale(self, value: float) -> None:
        self.dec.m_source.l_sin_gen.noise_scale = value

    @property
    def sample_rate(self) -> int:
        return self.cfg.sr

    @property
    def hop(self) -> int:
        """Output samples per feature frame."""
        return self.dec.upp

    def infer(
        self,
        phone: Tensor,
        phone_lengths: Tensor,
        pitch: Tensor,
        nsff0: Tensor,
        sid: Tensor,
        skip_head: int | Tensor | None = None,
        return_length: int | Tensor | None = None,
        return_length2: int | Tensor | None = None,
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Upstream ``infer``: returns ``(audio, x_mask, (z, z_p, m_p, logs_p))``.

        With ``skip_head``/``return_length`` (frames), only ``return_length`` frames from
        ``skip_head`` are decoded; the encoder still sees every frame and the flow up to
        24 frames of left context, as in the upstream realtime path. ``return_length2``
        stretches the decoder input to that many frames (upstream's resampling hook).
        """
        g = self.emb_g(sid).unsqueeze(-1)
        if skip_head is not None and return_length is not None:
            head, length = int(skip_head), int(return_length)
            flow_head = max(head - 24, 0)
            dec_head = head - flow_head
            m_p, logs_p, x_mask = self.enc_p(phone, pitch, phone_lengths, flow_head)
            z_p = self._prior_sample(m_p, logs_p, x_mask)
            z = self.flow(z_p, x_mask, g, reverse=True)
            z = z[:, :, dec_head : dec_head + length]
            x_mask = x_mask[:, :, dec_head : dec_head + length]
            nsff0 = nsff0[:, head : head + length]
        else:
            m_p, logs_p, x_mask = self.enc_p(phone, pitch, phone_lengths)
            z_p = self._prior_sample(m_p, logs_p, x_mask)
            z = self.flow(z_p, x_mask, g, reverse=True)
        n_res = None if return_length2 is None else int(return_length2)
        audio = self.dec(z * x_mask, nsff0, g, n_res=n_res)
        return audio, x_mask, (z, z_p, m_p, logs_p)

    def _prior_sample(self, m_p: Tensor, logs_p: Tensor, x_mask: Tensor) -> Tensor:
        if not self.noise_scale:
            return m_p * x_mask
        noise = torch.randn_like(m_p) * self.noise_scale
        return (m_p + torch.exp(logs_p) * noise) * x_mask

    def forward(
        self,
        phone: Tensor,
        phone_lengths: Tensor,
        pitch: Tensor,
        nsff0: Tensor,
        sid: Tensor,
    ) -> dict[str, Tensor]:
        """``infer`` with its outputs named as in the golden manifests."""
        audio, x_mask, (z, z_p, m_p, logs_p) = self.infer(phone, phone_lengths, pitch, nsff0, sid)
        return {"audio": audio, "x_mask": x_mask, "z": z, "z_p": z_p, "m_p": m_p, "logs_p": logs_p}
