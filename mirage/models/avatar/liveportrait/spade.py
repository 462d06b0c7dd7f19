"""G, the SPADE generator: warped 256×64×64 feature → 512×512 RGB image.

Residual blocks whose normalisation is modulated by the input feature map (SPADE), with
spectral-normalised convs stored as ``weight_orig`` / ``weight_u`` / ``weight_v`` like the
checkpoint. In eval mode spectral norm uses the stored u, v (no power iteration), so it is
deterministic; ``fold_spectral_norm`` bakes it into plain weights for fast inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import remove_spectral_norm, spectral_norm

SPADE_HIDDEN = 128
LEAKY_SLOPE = 0.2


class SPADE(nn.Module):
    """Instance norm (no affine) whose scale and shift are predicted from ``segmap``."""

    def __init__(self, norm_nc: int, label_nc: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_nc, SPADE_HIDDEN, kernel_size=3, padding=1), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x)
        if segmap.shape[-2:] != x.shape[-2:]:
            segmap = F.interpolate(segmap, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Two SPADE → LeakyReLU(0.2) → conv steps plus a shortcut (learned when widths differ)."""

    def __init__(self, fin: int, fout: int, label_nc: int) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, kernel_size=1, bias=False))
        self.norm_0 = SPADE(fin, label_nc)
        self.norm_1 = SPADE(fmiddle, label_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), LEAKY_SLOPE))
        return shortcut + dx


class SPADEDecoder(nn.Module):
    """``forward(feature)`` (B, C, 64, 64) → ``{"image": (B, 3, 512, 512)}`` in [0, 1]."""

    def __init__(
        self,
        upscale: int = 2,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        out_channels: int = 64,
    ) -> None:
        super().__init__()
        width = min(max_features, block_expansion * (2**num_down_blocks))
        self.fc = nn.Conv2d(width, 2 * width, kernel_size=3, padding=1)
        self.G_middle_0 = SPADEResnetBlock(2 * width, 2 * width, width)
        self.G_middle_1 = SPADEResnetBlock(2 * width, 2 * width, width)
        self.G_middle_2 = SPADEResnetBlock(2 * width, 2 * width, width)
        self.G_middle_3 = SPADEResnetBlock(2 * width, 2 * width, width)
        self.G_middle_4 = SPADEResnetBlock(2 * width, 2 * width, width)
        self.G_middle_5 = SPADEResnetBlock(2 * width, 2 * width, width)
        self.up_0 = SPADEResnetBlock(2 * width, width, width)
        self.up_1 = SPADEResnetBlock(width, out_channels, width)
        self.conv_img: nn.Module
        if upscale <= 1:
            self.conv_img = nn.Conv2d(out_channels, 3, kernel_size=3, padding=1)
        else:
            self.conv_img = nn.Sequential(
                nn.Conv2d(out_channels, 3 * upscale * upscale, kernel_size=3, padding=1),
                nn.PixelShuffle(upscale),
            )

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        seg = feature
        x = self.fc(feature)
        for block in (
            self.G_middle_0,
            self.G_middle_1,
            self.G_middle_2,
            self.G_middle_3,
            self.G_middle_4,
            self.G_middle_5,
        ):
            x = block(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg)
        x = self.up_1(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg)
        x = self.conv_img(F.leaky_relu(x, LEAKY_SLOPE))
        return {"image": torch.sigmoid(x)}

    def fold_spectral_norm(self) -> SPADEDecoder:
        """Replace every spectral-normalised conv's weight by ``weight_orig / sigma`` once.

        Same outputs, less work per call; afterwards the state_dict no longer has the
        checkpoint's ``weight_orig/u/v`` keys, so do this after loading weights.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and hasattr(module, "weight_orig"):
                remove_spectral_norm(module)
        return self
