"""Building blocks shared by the LivePortrait networks.

Attribute names (``conv``, ``norm``, ``conv1``, ``down_blocks``, ...) and the order in which
sub-modules are registered are part of the checkpoint format: they fix the state_dict keys
and their order, so the official weight files load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SameBlock2d(nn.Module):
    """3×3 conv → batch norm → ReLU (LeakyReLU with slope 0.01 when ``leaky``)."""

    def __init__(self, in_channels: int, out_channels: int, *, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.negative_slope = 0.01 if leaky else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, self.negative_slope) if self.negative_slope else F.relu(x)


class DownBlock2d(nn.Module):
    """3×3 conv → batch norm → ReLU → 2×2 average pool (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), kernel_size=2)


class DownBlock3d(nn.Module):
    """3×3×3 conv → batch norm → ReLU → (1, 2, 2) average pool (depth is kept)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), kernel_size=(1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest (1, 2, 2) upsampling → 3×3×3 conv → batch norm → ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return F.relu(self.norm(self.conv(x)))


class ResBlock3d(nn.Module):
    """Pre-activation residual block: (norm → ReLU → conv) twice, plus the input.

    The convs are registered before the norms: that is the checkpoint's key order.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _hourglass_channels(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * (2**level))


class HourglassEncoder(nn.Module):
    """``num_blocks`` DownBlock3d; returns the input and every level's output (the skips)."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else _hourglass_channels(block_expansion, max_features, i)
            cout = _hourglass_channels(block_expansion, max_features, i + 1)
            blocks.append(DownBlock3d(cin, cout))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """UpBlock3d per level, each output concatenated with the matching skip, then a
    3×3×3 conv → batch norm → ReLU over ``block_expansion + in_features`` channels."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            widen = 1 if i == num_blocks - 1 else 2  # every level but the deepest gets a skip
            cin = widen * _hourglass_channels(block_expansion, max_features, i + 1)
            cout = _hourglass_channels(block_expansion, max_features, i)
            blocks.append(UpBlock3d(cin, cout))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for level, block in enumerate(self.up_blocks):
            out = torch.cat([block(out), skips[-2 - level]], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """3D U-Net over (depth, H, W) that halves only H and W at each level."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def coordinate_grid(
    depth: int, height: int, width: int, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(D, H, W, 3) grid of (x, y, z) coordinates, index i ↦ 2·i/(n−1) − 1, x fastest.

    The grid spans [-1, 1] corner to corner; the networks still sample with
    ``grid_sample(align_corners=False)``, as the official ones do, so the weights agree.
    """
    axes = [
        2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1
        for n in (depth, height, width)
    ]
    zz, yy, xx = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1)


def keypoint_gaussians(kp: torch.Tensor, grid: torch.Tensor, variance: float) -> torch.Tensor:
    """Isotropic Gaussian bumps around keypoints ``kp`` (B, K, 3) on ``grid`` (D, H, W, 3).

    Returns (B, K, D, H, W).
    """
    diff = grid - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)
