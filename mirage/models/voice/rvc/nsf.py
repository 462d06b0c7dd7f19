"""NSF-HiFiGAN decoder: a HiFi-GAN vocoder fed, at every scale, by a sine excitation at f0.

The sine source follows the upstream arithmetic step for step (frame-rate phase
cumsum, upsampled wrap detection, sample-rate cumsum in float32), because the phase of
a long float32 cumsum depends on the order of operations and the golden data pins it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mirage.models.voice.rvc.weightnorm import WNConv1d, WNConvTranspose1d

LRELU_SLOPE = 0.1


class SineGen(nn.Module):
    """Frame-rate f0 (B, T) in Hz → sine excitation (B, T·upp, 1); 0 Hz means unvoiced.

    ``noise_scale`` multiplies the additive Gaussian noise (std ``noise_std`` where voiced,
    ``amp / 3`` where unvoiced); 0 makes the source deterministic.
    """

    def __init__(
        self,
        sampling_rate: int,
        amp: float = 0.1,
        noise_std: float = 0.003,
        noise_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.sampling_rate = sampling_rate
        self.amp = amp
        self.noise_std = noise_std
        self.noise_scale = noise_scale

    def forward(self, f0: Tensor, upp: int) -> Tensor:
        with torch.no_grad():
            f0 = f0.float().unsqueeze(-1)  # (B, T, 1)
            step = (f0 / self.sampling_rate) % 1  # cycles per output sample
            coarse = torch.cumsum(step, 1) * upp  # phase at frame rate, in cycles
            coarse = F.interpolate(
                coarse.transpose(2, 1), scale_factor=float(upp), mode="linear", align_corners=True
            ).transpose(2, 1)
            step = F.interpolate(
                step.transpose(2, 1), scale_factor=float(upp), mode="nearest"
            ).transpose(2, 1)
            coarse = coarse % 1
            # Subtract one cycle wherever the coarse phase wraps, to keep the cumsum small.
            wraps = torch.zeros_like(step)
            wraps[:, 1:, :] = (coarse[:, 1:, :] - coarse[:, :-1, :] < 0) * -1.0
            sine = torch.sin(torch.cumsum(step + wraps, dim=1) * 2 * torch.pi) * self.amp
            voiced = F.interpolate(
                (f0 > 0).to(f0.dtype).transpose(2, 1), scale_factor=float(upp), mode="nearest"
            ).transpose(2, 1)
            sine = sine * voiced
            if self.noise_scale:
                noise_amp = voiced * self.noise_std + (1 - voiced) * self.amp / 3
                sine = sine + self.noise_scale * noise_amp * torch.randn_like(sine)
        return sine


class SourceModule(nn.Module):
    """Sine excitation mixed by a 1→1 linear layer and tanh (the 'harmonic source')."""

    def __init__(self, sampling_rate: int, noise_scale: float = 1.0) -> None:
        super().__init__()
        self.l_sin_gen = SineGen(sampling_rate, noise_scale=noise_scale)
        self.l_linear = nn.Linear(1, 1)

    def forward(self, f0: Tensor, upp: int) -> Tensor:
        sine = self.l_sin_gen(f0, upp).to(self.l_linear.weight.dtype)
        return torch.tanh(self.l_linear(sine))


def _same(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) residual pairs with leaky ReLUs."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel, dilation=d, padding=_same(kernel, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel, padding=_same(kernel)) for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            y = c1(F.leaky_relu(x, LRELU_SLOPE))
            x = c2(F.leaky_relu(y, LRELU_SLOPE)) + x
        return x


class ResBlock2(nn.Module):
    """Single dilated convs with residuals (config resblock '2')."""

    def __init__(self, channels: int, kernel: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            WNConv1d(channels, channels, kernel, dilation=d, padding=_same(kernel, d))
            for d in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(F.leaky_relu(x, LRELU_SLOPE)) + x
        return x


class GeneratorNSF(nn.Module):
    """Latent z (B, C, T) + f0 (B, T) + speaker g (B, gin, 1) → waveform (B, 1, T·upp)."""

    def __init__(
        self,
        in_channels: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
        upsample_rates: Sequence[int],
        upsample_initial_channel: int,
        upsample_kernel_sizes: Sequence[int],
        gin_channels: int,
        sampling_rate: int,
        noise_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.upp = math.prod(upsample_rates)
        self.m_source = SourceModule(sampling_rate, noise_scale)
        self.noise_convs = nn.ModuleList()
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, 1, padding=3)
        block = ResBlock1 if str(resblock) == "1" else ResBlock2
        self.ups = nn.ModuleList()
        # zip truncates: some files carry a 5th, unused upsample kernel size.
        stages = list(zip(upsample_rates, upsample_kernel_sizes, strict=False))
        for i, (rate, kernel) in enumerate(stages):
            c_in = upsample_initial_channel // 2**i
            c_out = upsample_initial_channel // 2 ** (i + 1)
            self.ups.append(
                WNConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2)
            )
            # Bring the 'upp'-rate excitation down to this stage's rate.
            stride = math.prod(upsample_rates[i + 1 :])
            if i + 1 < len(stages):
                conv = nn.Conv1d(1, c_out, stride * 2, stride=stride, padding=stride // 2)
            else:
                conv = nn.Conv1d(1, c_out, 1)
            self.noise_convs.append(conv)
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = upsample_initial_channel // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=False):
                self.resblocks.append(block(ch, k, d))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1)

    def forward(self, x: Tensor, f0: Tensor, g: Tensor, n_res: int | None = None) -> Tensor:
        source = self.m_source(f0, self.upp).transpose(1, 2)  # (B, 1, T·upp)
        if n_res is not None:
            if source.shape[-1] != n_res * self.upp:
                source = F.interpolate(source, size=n_res * self.upp, mode="linear")
            if x.shape[-1] != n_res:
                x = F.interpolate(x, size=n_res, mode="linear")
        x = self.conv_pre(x) + self.cond(g)
        n = self.num_kernels
        for i, (up, noise_conv) in enumerate(zip(self.ups, self.noise_convs, strict=True)):
            x = up(F.leaky_relu(x, LRELU_SLOPE)) + noise_conv(source)
            blocks = self.resblocks[i * n : (i + 1) * n]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / n
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x)
