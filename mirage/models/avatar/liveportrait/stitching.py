"""S, the stitching and eye / lip retargeting MLPs.

The official checkpoint holds three separate state_dicts under ``retarget_shoulder``
(stitching), ``retarget_mouth`` (lip) and ``retarget_eye`` (eye); this container uses those
names as attributes so its own state_dict is the flattened checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mirage.models.avatar.liveportrait.keypoints import apply_stitching, flatten_pair

#: Sub-network → the checkpoint's key for it.
CHECKPOINT_KEYS = {"stitching": "retarget_shoulder", "lip": "retarget_mouth", "eye": "retarget_eye"}


class RetargetingMLP(nn.Module):
    """Linear layers with ReLU between them, under ``mlp`` (keys ``mlp.0``, ``mlp.2``, ...)."""

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], output_size: int) -> None:
        super().__init__()
        widths = [input_size, *hidden_sizes]
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(widths):
            layers += [nn.Linear(cin, cout), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(x)
        return out


_DEFAULTS: dict[str, dict[str, Any]] = {
    "stitching": {"input_size": 126, "hidden_sizes": [128, 128, 64], "output_size": 65},
    "lip": {"input_size": 65, "hidden_sizes": [128, 128, 64], "output_size": 63},
    "eye": {"input_size": 66, "hidden_sizes": [256, 256, 128, 128, 64], "output_size": 63},
}


class StitchingRetargetingModule(nn.Module):
    """The three MLPs; ``forward`` runs all of them (the golden-data call).

    Pipelines use the sub-nets directly (``stitching``, ``lip``, ``eye``) with the helpers in
    ``keypoints.py``.
    """

    def __init__(
        self,
        stitching: Mapping[str, Any] | None = None,
        lip: Mapping[str, Any] | None = None,
        eye: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.retarget_shoulder = RetargetingMLP(**(stitching or _DEFAULTS["stitching"]))
        self.retarget_mouth = RetargetingMLP(**(lip or _DEFAULTS["lip"]))
        self.retarget_eye = RetargetingMLP(**(eye or _DEFAULTS["eye"]))

    @property
    def stitching(self) -> RetargetingMLP:
        return self.retarget_shoulder

    @property
    def lip(self) -> RetargetingMLP:
        return self.retarget_mouth

    @property
    def eye(self) -> RetargetingMLP:
        return self.retarget_eye

    def forward(
        self,
        kp_source: torch.Tensor,
        kp_driving: torch.Tensor,
        lip_close_ratio: torch.Tensor,
        eye_close_ratio: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        stitching_raw = self.retarget_shoulder(flatten_pair(kp_source, kp_driving))
        lip_raw = self.retarget_mouth(flatten_pair(kp_source, lip_close_ratio))
        eye_raw = self.retarget_eye(flatten_pair(kp_source, eye_close_ratio))
        return {
            "stitching_raw": stitching_raw,
            "lip_raw": lip_raw,
            "eye_raw": eye_raw,
            "kp_driving_stitched": apply_stitching(kp_driving, stitching_raw),
            "lip_delta": lip_raw.reshape(kp_source.shape),
            "eye_delta": eye_raw.reshape(kp_source.shape),
        }
