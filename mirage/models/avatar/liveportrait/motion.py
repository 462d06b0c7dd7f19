"""M, the motion extractor: a ConvNeXt-V2-tiny backbone with pose, keypoint and expression heads.

Per image it predicts canonical keypoints, head pose (as 66-bin logits), translation,
expression offsets and scale; ``keypoints.py`` turns these into posed 3D keypoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ConvNeXt-V2 "tiny": blocks per stage and channels per stage.
TINY_DEPTHS = (3, 3, 9, 3)
TINY_DIMS = (96, 192, 384, 768)
LAYER_NORM_EPS = 1e-6


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (``weight``/``bias`` as checkpointed).

    It permutes to NHWC and back, which is free for channels_last tensors.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, LAYER_NORM_EPS
        )
        return y.permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on NHWC tensors: scale each channel by its spatial L2 norm relative
    to the mean over channels. The norm is reduced in float32 so fp16 autocast cannot
    overflow it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True, dtype=torch.float32)
        nx = (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)).to(x.dtype)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7 conv → LayerNorm → MLP (×4, GELU, GRN), added to the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC for the per-pixel MLP
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2Heads(nn.Module):
    """The backbone plus LivePortrait's linear heads on the pooled 768-d feature."""

    def __init__(
        self,
        num_kp: int,
        num_bins: int = 66,
        in_chans: int = 3,
        depths: tuple[int, ...] = TINY_DEPTHS,
        dims: tuple[int, ...] = TINY_DIMS,
    ) -> None:
        super().__init__()
        stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0])
        )
        downs = [
            nn.Sequential(
                ChannelsFirstLayerNorm(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)
            )
            for i in range(len(dims) - 1)
        ]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth)))
            for dim, depth in zip(dims, depths, strict=True)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=LAYER_NORM_EPS)
        width = dims[-1]
        # Registration order = checkpoint key order.
        self.fc_kp = nn.Linear(width, 3 * num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, num_bins)
        self.fc_yaw = nn.Linear(width, num_bins)
        self.fc_roll = nn.Linear(width, num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * num_kp)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        feat = self.norm(x.mean(dim=(-2, -1)))
        return {
            "pitch": self.fc_pitch(feat),
            "yaw": self.fc_yaw(feat),
            "roll": self.fc_roll(feat),
            "t": self.fc_t(feat),
            "exp": self.fc_exp(feat),
            "scale": self.fc_scale(feat),
            "kp": self.fc_kp(feat),
        }


class MotionExtractor(nn.Module):
    """(B, 3, 256, 256) in [0, 1] → dict of pitch/yaw/roll logits (B, 66), t (B, 3),
    exp (B, 3·num_kp), scale (B, 1), kp (B, 3·num_kp).

    The backbone sits under ``detector`` because the checkpoint keys start with ``detector.``.
    """

    def __init__(self, num_kp: int = 21, backbone: str = "convnextv2_tiny") -> None:
        super().__init__()
        if backbone != "convnextv2_tiny":
            raise ValueError(f"unsupported motion-extractor backbone {backbone!r}")
        self.detector = ConvNeXtV2Heads(num_kp=num_kp)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = self.detector(image)
        return out
