"""F, the appearance feature extractor: source image → 3D feature volume.

Computed once per reference portrait; the volume is what the warping module moves.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from mirage.models.avatar.liveportrait.blocks import DownBlock2d, ResBlock3d, SameBlock2d


class AppearanceFeatureExtractor(nn.Module):
    """(B, 3, 256, 256) in [0, 1] → ``{"feature_3d": (B, 32, 16, 64, 64)}``.

    A 2D encoder whose last 512 channels are read as 32 channels × 16 depth slices,
    refined by 3D residual blocks. Keyword arguments are the official config's.
    """

    def __init__(
        self,
        image_channel: int = 3,
        block_expansion: int = 64,
        num_down_blocks: int = 2,
        max_features: int = 512,
        reshape_channel: int = 32,
        reshape_depth: int = 16,
        num_resblocks: int = 6,
    ) -> None:
        super().__init__()
        if reshape_channel * reshape_depth != max_features:
            raise ValueError(
                f"reshape_channel × reshape_depth ({reshape_channel}×{reshape_depth}) "
                f"must equal max_features ({max_features})"
            )
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth
        widths = [min(max_features, block_expansion * (2**i)) for i in range(num_down_blocks + 1)]
        self.first = SameBlock2d(image_channel, block_expansion)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(widths[i], widths[i + 1]) for i in range(num_down_blocks)
        )
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential(
            OrderedDict((f"3dr{i}", ResBlock3d(reshape_channel)) for i in range(num_resblocks))
        )

    def forward(self, source_image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        # reshape, not view: a channels_last tensor cannot be viewed this way.
        volume = out.reshape(b, self.reshape_channel, self.reshape_depth, h, w)
        return {"feature_3d": self.resblocks_3d(volume)}
