"""RVC voice conversion: weight-compatible networks, checkpoint loaders, streaming converter.

Every name is imported on first use (module ``__getattr__``), so importing this package
(e.g. by the backend registry to list backends) does not load torch.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirage.models.voice.rvc.build import NETWORK_NAMES, build_network
    from mirage.models.voice.rvc.checkpoint import (
        CheckpointError,
        RvcModelInfo,
        index_path,
        load_rmvpe,
        load_synthesizer,
        model_path,
        rmvpe_path,
        save_synthesizer,
    )
    from mirage.models.voice.rvc.converter import RvcConverter
    from mirage.models.voice.rvc.files import unavailable_reason
    from mirage.models.voice.rvc.rmvpe import Rmvpe
    from mirage.models.voice.rvc.synthesizer import Synthesizer, SynthesizerConfig

_LAZY = MappingProxyType(
    {
        "NETWORK_NAMES": "build",
        "build_network": "build",
        "CheckpointError": "checkpoint",
        "RvcModelInfo": "checkpoint",
        "index_path": "checkpoint",
        "load_rmvpe": "checkpoint",
        "load_synthesizer": "checkpoint",
        "model_path": "checkpoint",
        "rmvpe_path": "checkpoint",
        "save_synthesizer": "checkpoint",
        "RvcConverter": "converter",
        "unavailable_reason": "files",
        "Rmvpe": "rmvpe",
        "Synthesizer": "synthesizer",
        "SynthesizerConfig": "synthesizer",
    }
)

__all__ = [
    "NETWORK_NAMES",
    "CheckpointError",
    "Rmvpe",
    "RvcConverter",
    "RvcModelInfo",
    "Synthesizer",
    "SynthesizerConfig",
    "build_network",
    "index_path",
    "load_rmvpe",
    "load_synthesizer",
    "model_path",
    "rmvpe_path",
    "save_synthesizer",
    "unavailable_reason",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
