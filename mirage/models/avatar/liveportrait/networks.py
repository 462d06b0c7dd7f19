"""Build LivePortrait's five networks by their official names, with the official configs.

``build_network(name)`` is the one entry point the pipeline, the loader, the benchmarks and
outside checks use. Every network is called with keyword inputs and returns a dict of named
outputs (the names of the golden manifests' ``io`` section).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from mirage.models.avatar.liveportrait.appearance import AppearanceFeatureExtractor
from mirage.models.avatar.liveportrait.motion import MotionExtractor
from mirage.models.avatar.liveportrait.spade import SPADEDecoder
from mirage.models.avatar.liveportrait.stitching import StitchingRetargetingModule
from mirage.models.avatar.liveportrait.warping import WarpingNetwork

#: The official configs (``src/config/models.yaml``), by network name.
OFFICIAL_CONFIGS: dict[str, dict[str, Any]] = {
    "appearance_feature_extractor": {
        "image_channel": 3,
        "block_expansion": 64,
        "num_down_blocks": 2,
        "max_features": 512,
        "reshape_channel": 32,
        "reshape_depth": 16,
        "num_resblocks": 6,
    },
    "motion_extractor": {"num_kp": 21, "backbone": "convnextv2_tiny"},
    "warping_module": {
        "num_kp": 21,
        "block_expansion": 64,
        "max_features": 512,
        "num_down_blocks": 2,
        "reshape_channel": 32,
        "estimate_occlusion_map": True,
        "dense_motion_params": {
            "block_expansion": 32,
            "max_features": 1024,
            "num_blocks": 5,
            "reshape_depth": 16,
            "compress": 4,
        },
    },
    "spade_generator": {
        "upscale": 2,
        "block_expansion": 64,
        "max_features": 512,
        "num_down_blocks": 2,
    },
    "stitching_retargeting_module": {
        "stitching": {"input_size": 126, "hidden_sizes": [128, 128, 64], "output_size": 65},
        "lip": {"input_size": 65, "hidden_sizes": [128, 128, 64], "output_size": 63},
        "eye": {"input_size": 66, "hidden_sizes": [256, 256, 128, 128, 64], "output_size": 63},
    },
}

_CLASSES: dict[str, Callable[..., nn.Module]] = {
    "appearance_feature_extractor": AppearanceFeatureExtractor,
    "motion_extractor": MotionExtractor,
    "warping_module": WarpingNetwork,
    "spade_generator": SPADEDecoder,
    "stitching_retargeting_module": StitchingRetargetingModule,
}

#: Every network name, in pipeline order.
NETWORK_NAMES: tuple[str, ...] = tuple(_CLASSES)


def build_network(name: str, **overrides: Any) -> nn.Module:
    """The network ``name`` with the official config (``overrides`` replace entries), in eval
    mode on the CPU, with untrained weights: load a checkpoint into it before use."""
    try:
        cls = _CLASSES[name]
    except KeyError:
        known = ", ".join(NETWORK_NAMES)
        raise ValueError(f"unknown LivePortrait network {name!r}; known: {known}") from None
    module = cls(**{**OFFICIAL_CONFIGS[name], **overrides})
    return module.eval()
