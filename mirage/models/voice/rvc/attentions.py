"""The prior encoder's transformer: VITS-style self-attention with relative positions.

Key names (``attn_layers``, ``norm_layers_1``, ``ffn_layers``, ``norm_layers_2``,
``emb_rel_k/v``, ``conv_q/k/v/o``, ``gamma/beta``) follow the RVC checkpoints so a
user's ``.pth`` loads unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """Layer norm over the channel axis of a (B, C, T) tensor (parameters ``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return y.transpose(1, -1)


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention whose logits and values get learned relative-offset terms.

    Offsets beyond ``±window`` contribute nothing (the tables are zero there), and one
    table is shared by all heads, as in the checkpoints (shape (1, 2·window+1, C/heads)).
    """

    def __init__(self, channels: int, n_heads: int, window: int = 10) -> None:
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels {channels} not divisible by heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window = window
        scale = self.head_dim**-0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * scale)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * scale)
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)

    def _offsets(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Table index of offset j - i for each (i, j), clamped, and where it is in range."""
        pos = torch.arange(length, device=device)
        rel = pos[None, :] - pos[:, None]
        inside = rel.abs() <= self.window
        return (rel.clamp(-self.window, self.window) + self.window), inside

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, C, T); mask: (B, 1, T, T) with 0 where attention is not allowed."""
        b, c, t = x.shape
        h, d = self.n_heads, self.head_dim
        q = self.conv_q(x).view(b, h, d, t).transpose(2, 3) / math.sqrt(d)
        k = self.conv_k(x).view(b, h, d, t).transpose(2, 3)
        v = self.conv_v(x).view(b, h, d, t).transpose(2, 3)
        index, inside = self._offsets(t, x.device)
        scores = q @ k.transpose(-2, -1)
        # q_i · E_k[j - i]: score each query against the (2w+1) offsets, then place them.
        rel_logits = q @ self.emb_rel_k.unsqueeze(0).transpose(-2, -1)  # (B, H, T, 2w+1)
        local = rel_logits.gather(-1, index.expand(b, h, t, t)) * inside
        scores = (scores + local).masked_fill(mask == 0, -1e4)
        attn = F.softmax(scores, dim=-1)
        out = attn @ v
        # Σ_j p_ij E_v[j - i]: sum the weights per offset, then mix the offset table.
        padded = F.pad(attn, (self.window, self.window))
        diag = torch.arange(t, device=x.device)[:, None] + torch.arange(
            2 * self.window + 1, device=x.device
        )
        per_offset = padded.gather(-1, diag.expand(b, h, t, 2 * self.window + 1))
        out = out + per_offset @ self.emb_rel_v.unsqueeze(0)
        out = out.transpose(2, 3).contiguous().view(b, c, t)
        return self.conv_o(out)


class FeedForward(nn.Module):
    """Two 'same'-padded convolutions with a ReLU between, masked before each."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        y = torch.relu(self.conv_1(F.pad(x * x_mask, self.pad)))
        return self.conv_2(F.pad(y * x_mask, self.pad)) * x_mask


class Encoder(nn.Module):
    """Post-norm transformer stack over (B, C, T) features."""

    def __init__(
        self,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        window: int = 10,
    ) -> None:
        super().__init__()
        self.attn_layers = nn.ModuleList(
            RelativeSelfAttention(channels, n_heads, window) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(LayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            FeedForward(channels, filter_channels, kernel_size) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(LayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: Tensor, x_mask: Tensor) -> Tensor:
        pair_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        x = x * x_mask
        for attn, norm1, ffn, norm2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm1(x + attn(x, pair_mask))
            x = norm2(x + ffn(x, x_mask))
        return x * x_mask
