"""The normalising flow between prior and decoder latents (run in reverse at inference).

Mean-only affine coupling layers over a speaker-conditioned WaveNet, alternating with
channel flips; the module list holds (coupling, flip) pairs so the coupling layers sit
at even indices (``flow.flows.0``, ``.2``, ...), as in the checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mirage.models.voice.rvc.weightnorm import WNConv1d


class WaveNet(nn.Module):
    """Non-causal gated WaveNet with a global conditioning vector per layer."""

    def __init__(
        self,
        hidden: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.n_layers = n_layers
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        self.cond_layer = WNConv1d(gin_channels, 2 * hidden * n_layers, 1)
        for i in range(n_layers):
            dilation = dilation_rate**i
            pad = (kernel_size * dilation - dilation) // 2
            self.in_layers.append(
                WNConv1d(hidden, 2 * hidden, kernel_size, dilation=dilation, padding=pad)
            )
            out = 2 * hidden if i < n_layers - 1 else hidden
            self.res_skip_layers.append(WNConv1d(hidden, out, 1))

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor) -> Tensor:
        skip = torch.zeros_like(x)
        cond = self.cond_layer(g)
        h = self.hidden
        for i, (inner, res_skip) in enumerate(
            zip(self.in_layers, self.res_skip_layers, strict=True)
        ):
            z = inner(x) + cond[:, 2 * h * i : 2 * h * (i + 1)]
            acts = torch.tanh(z[:, :h]) * torch.sigmoid(z[:, h:])
            y = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + y[:, :h]) * x_mask
                skip = skip + y[:, h:]
            else:
                skip = skip + y
        return skip * x_mask


class MeanOnlyCoupling(nn.Module):
    """x1 ← x1 - m(x0) in reverse (forward: x1 + m(x0)); x0 passes through."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int,
    ) -> None:
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden, self.half_channels, 1)

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor, reverse: bool) -> Tensor:
        x0, x1 = x[:, : self.half_channels], x[:, self.half_channels :]
        h = self.enc(self.pre(x0) * x_mask, x_mask, g)
        m = self.post(h) * x_mask
        x1 = (x1 - m) * x_mask if reverse else m + x1 * x_mask
        return torch.cat([x0, x1], 1)


class Flip(nn.Module):
    """Reverses the channel order (no parameters)."""

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor, reverse: bool) -> Tensor:
        return torch.flip(x, [1])


class CouplingFlow(nn.Module):
    """``n_flows`` (coupling, flip) pairs."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 3,
        n_flows: int = 4,
        gin_channels: int = 256,
    ) -> None:
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                MeanOnlyCoupling(
                    channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels
                )
            )
            self.flows.append(Flip())

    def forward(self, x: Tensor, x_mask: Tensor, g: Tensor, reverse: bool = True) -> Tensor:
        steps = reversed(self.flows) if reverse else iter(self.flows)
        for step in steps:
            x = step(x, x_mask, g, reverse)
        return x
