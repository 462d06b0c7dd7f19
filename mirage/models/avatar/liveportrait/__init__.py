"""LivePortrait: a clean-room PyTorch implementation that loads the official checkpoints.

Everything here is imported on first use (module ``__getattr__``), so importing this package
(or ``mirage.models``) does not import torch.

- ``build_network(name)``: one of ``NETWORK_NAMES`` with the official config, eval, CPU.
- ``load_networks(models_dir, device)`` / ``load_network`` / ``missing_weights``: the official
  checkpoint files in the weights folder (``BadCheckpoint`` for a damaged one).
- ``keypoints``: head pose, keypoint transform, relative motion, stitching.
- ``LivePortraitAnimator`` / ``unavailable_reason``: the FaceAnimator backend (``.animator``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirage.models.avatar.liveportrait.animator import LivePortraitAnimator
    from mirage.models.avatar.liveportrait.loader import (
        CHECKPOINT_FILES,
        BadCheckpoint,
        LivePortraitNetworks,
        checkpoint_paths,
        load_network,
        load_networks,
        missing_weights,
        save_checkpoints,
        unavailable_reason,
    )
    from mirage.models.avatar.liveportrait.networks import NETWORK_NAMES, build_network

_LAZY = {
    "LivePortraitAnimator": "animator",
    "unavailable_reason": "loader",
    "build_network": "networks",
    "NETWORK_NAMES": "networks",
    "BadCheckpoint": "loader",
    "CHECKPOINT_FILES": "loader",
    "LivePortraitNetworks": "loader",
    "checkpoint_paths": "loader",
    "load_network": "loader",
    "load_networks": "loader",
    "missing_weights": "loader",
    "save_checkpoints": "loader",
}

__all__ = [
    "CHECKPOINT_FILES",
    "NETWORK_NAMES",
    "BadCheckpoint",
    "LivePortraitAnimator",
    "LivePortraitNetworks",
    "build_network",
    "checkpoint_paths",
    "load_network",
    "load_networks",
    "missing_weights",
    "save_checkpoints",
    "unavailable_reason",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
