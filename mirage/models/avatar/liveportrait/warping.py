"""W, the warping module: dense motion from two keypoint sets, then the warped feature.

The dense-motion network turns K sparse keypoint motions into a per-voxel flow (a soft
mask over K+1 candidate flows: identity plus one per keypoint) and an occlusion map; the
3D appearance volume is resampled along that flow and projected to a 2D feature map.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mirage.models.avatar.liveportrait.blocks import (
    Hourglass,
    SameBlock2d,
    coordinate_grid,
    keypoint_gaussians,
)

#: Variance of the keypoint heatmaps, in normalised [-1, 1] units.
KP_VARIANCE = 0.01


@dataclass(frozen=True)
class DenseMotionParams:
    """The official ``dense_motion_params`` block of models.yaml."""

    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4


class DenseMotionNetwork(nn.Module):
    """Predicts the deformation (B, D, H, W, 3) and occlusion map (B, 1, H, W)."""

    def __init__(
        self,
        num_kp: int,
        feature_channel: int,
        params: DenseMotionParams,
        estimate_occlusion_map: bool = True,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        in_features = (num_kp + 1) * (params.compress + 1)
        self.hourglass = Hourglass(
            params.block_expansion, in_features, params.num_blocks, params.max_features
        )
        width = self.hourglass.out_filters
        self.mask = nn.Conv3d(width, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, params.compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(params.compress)
        self.occlusion = (
            nn.Conv2d(width * params.reshape_depth, 1, kernel_size=7, padding=3)
            if estimate_occlusion_map
            else None
        )

    def forward(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        feature = F.relu(self.norm(self.compress(feature)))
        b, c, d, h, w = feature.shape
        k1 = self.num_kp + 1
        grid = coordinate_grid(d, h, w, dtype=kp_source.dtype, device=kp_source.device)

        # Candidate flows, driving → source: the identity, then one per keypoint that moves
        # every voxel by that keypoint's displacement. (B, K+1, D, H, W, 3)
        shift = grid - kp_driving[:, :, None, None, None, :]
        per_kp = shift + kp_source[:, :, None, None, None, :]
        motions = torch.cat([grid.expand(b, 1, d, h, w, 3), per_kp], dim=1)

        # Sample the compressed feature along every candidate flow in one call: the K+1 flows
        # are stacked along depth instead of repeating the feature K+1 times.
        sampled = F.grid_sample(
            feature, motions.reshape(b, k1 * d, h, w, 3).to(feature.dtype), align_corners=False
        )
        deformed = sampled.reshape(b, c, k1, d, h, w).transpose(1, 2)  # (B, K+1, C, D, H, W)

        heat = keypoint_gaussians(kp_driving, grid, KP_VARIANCE) - keypoint_gaussians(
            kp_source, grid, KP_VARIANCE
        )
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1).unsqueeze(2)
        net_in = torch.cat([heat.to(deformed.dtype), deformed], dim=2).reshape(b, -1, d, h, w)

        prediction = self.hourglass(net_in)
        mask = F.softmax(self.mask(prediction), dim=1)  # (B, K+1, D, H, W)
        deformation = (motions * mask.unsqueeze(-1).to(motions.dtype)).sum(dim=1)
        out = {"deformation": deformation, "mask": mask}
        if self.occlusion is not None:
            pb, pc, pd, ph, pw = prediction.shape
            flat = prediction.reshape(pb, pc * pd, ph, pw)
            out["occlusion_map"] = torch.sigmoid(self.occlusion(flat))
        return out


class WarpingNetwork(nn.Module):
    """``forward(feature_3d, kp_driving, kp_source)`` → dict of ``occlusion_map``
    (B, 1, 64, 64), ``deformation`` (B, 16, 64, 64, 3) and ``out`` (B, 256, 64, 64).

    The positional order (feature, driving, source) is the official one; call it by keyword.
    """

    def __init__(
        self,
        num_kp: int = 21,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        reshape_channel: int = 32,
        estimate_occlusion_map: bool = True,
        dense_motion_params: Mapping[str, int] | DenseMotionParams | None = None,
    ) -> None:
        super().__init__()
        if dense_motion_params is None:
            params = DenseMotionParams()
        elif isinstance(dense_motion_params, DenseMotionParams):
            params = dense_motion_params
        else:
            params = DenseMotionParams(**dense_motion_params)
        self.dense_motion_network = DenseMotionNetwork(
            num_kp, reshape_channel, params, estimate_occlusion_map
        )
        width = block_expansion * (2**num_down_blocks)
        self.third = SameBlock2d(max_features, width, leaky=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)

    def forward(
        self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        motion = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        deformation = motion["deformation"]
        warped = F.grid_sample(feature_3d, deformation.to(feature_3d.dtype), align_corners=False)
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.reshape(b, c * d, h, w)))
        result = {"deformation": deformation, "out": out}
        if "occlusion_map" in motion:
            occlusion = motion["occlusion_map"]
            result["occlusion_map"] = occlusion
            result["out"] = out * occlusion
        return result
