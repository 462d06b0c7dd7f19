"""Convolutions stored as weight-norm pairs (``weight_g`` magnitude, ``weight_v`` direction).

RVC checkpoints hold the old ``torch.nn.utils.weight_norm`` layout: the plain ``weight``
is replaced by ``weight_g`` (norm over every axis but 0, shape (dim0, 1, 1)) and
``weight_v``, registered after ``bias``. These classes keep exactly that layout so a
state dict loads unchanged, and rebuild the effective weight on each call.
"""

from __future__ import annotations

from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn


def _split_weight(module: nn.Module, weight: Tensor) -> None:
    del module.weight
    norm = weight.detach().norm(dim=(1, 2), keepdim=True)
    module.weight_g = nn.Parameter(norm.clone())
    module.weight_v = nn.Parameter(weight.detach().clone())


def _joined(g: Tensor, v: Tensor) -> Tensor:
    return v * (g / v.norm(dim=(1, 2), keepdim=True))


class WNConv1d(nn.Conv1d):
    """``nn.Conv1d`` whose weight is ``g · v / ‖v‖`` (per output channel)."""

    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def __init__(self, *args: int, **kwargs: int) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        _split_weight(self, self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, _joined(self.weight_g, self.weight_v), self.bias)


class WNConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with weight norm over axis 0 (the input channels)."""

    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def __init__(self, *args: int, **kwargs: int) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        _split_weight(self, self.weight)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        weight = _joined(self.weight_g, self.weight_v)
        return F.conv_transpose1d(
            x,
            weight,
            self.bias,
            self.stride,
            cast(tuple[int], self.padding),
            self.output_padding,
            self.groups,
            self.dilation,
        )
