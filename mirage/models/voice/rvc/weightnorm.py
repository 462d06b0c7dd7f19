"""Convolutions stored as weight-norm pairs (``weight_g`` magnitude, ``weight_v`` direction).

RVC checkpoints hold the old ``torch.nn.utils.weight_norm`` layout: the plain ``weight``
is replaced by ``weight_g`` (norm over every axis but 0, shape (dim0, 1, 1)) and
``weight_v``, registered after ``bias``. These classes keep exactly that layout so a
state dict loads unchanged. The effective weight is rebuilt when autograd needs it and
otherwise cached until either parameter changes (new values, device or dtype), which
saves ~100 small norm kernels per synthesizer call in streaming inference.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_Key = tuple[int, int, int, int, torch.device, torch.dtype]


class _WeightNorm:
    """Mixin: the ``weight_g``/``weight_v`` pair and the cached joined weight."""

    weight_g: nn.Parameter
    weight_v: nn.Parameter
    _joined_cache: tuple[_Key, Tensor] | None

    def _split(self, weight: Tensor) -> None:
        module = cast(nn.Module, self)
        del module.weight
        module.weight_g = nn.Parameter(weight.detach().norm(dim=(1, 2), keepdim=True).clone())
        module.weight_v = nn.Parameter(weight.detach().clone())
        self._joined_cache = None

    def joined_weight(self) -> Tensor:
        g, v = self.weight_g, self.weight_v
        if torch.is_grad_enabled() and (g.requires_grad or v.requires_grad):
            return v * (g / v.norm(dim=(1, 2), keepdim=True))
        key = (g.data_ptr(), v.data_ptr(), g._version, v._version, v.device, v.dtype)
        if self._joined_cache is None or self._joined_cache[0] != key:
            with torch.no_grad():
                self._joined_cache = (key, v * (g / v.norm(dim=(1, 2), keepdim=True)))
        return self._joined_cache[1]


class WNConv1d(_WeightNorm, nn.Conv1d):
    """``nn.Conv1d`` whose weight is ``g · v / ‖v‖`` (per output channel)."""

    def __init__(self, *args: int, **kwargs: int) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._split(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.joined_weight(), self.bias)


class WNConvTranspose1d(_WeightNorm, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with weight norm over axis 0 (the input channels)."""

    def __init__(self, *args: int, **kwargs: int) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._split(self.weight)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        return F.conv_transpose1d(
            x,
            self.joined_weight(),
            self.bias,
            self.stride,
            cast(tuple[int], self.padding),
            self.output_padding,
            self.groups,
            self.dilation,
        )
