"""Load (and write) LivePortrait's official checkpoint files from the weights folder.

Layout under the weights folder, as the official release ships it::

    liveportrait/base_models/{appearance_feature_extractor,motion_extractor,
                              warping_module,spade_generator}.pth    # torch.save(state_dict)
    liveportrait/retargeting_models/stitching_retargeting_module.pth  # dict of 3 state_dicts

torch is imported only inside the functions that need it, so ``missing_weights`` stays cheap
for ``mirage doctor`` and the ``auto`` backend choice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirage.models.base import WeightsMissing
from mirage.models.checkpoint import BadCheckpoint, load_strict, read_checkpoint
from mirage.weights import models_dir as resolve_models_dir

if TYPE_CHECKING:
    from torch import nn

#: Checkpoint path of each network, relative to the weights folder.
CHECKPOINT_FILES: dict[str, str] = {
    "appearance_feature_extractor": "liveportrait/base_models/appearance_feature_extractor.pth",
    "motion_extractor": "liveportrait/base_models/motion_extractor.pth",
    "warping_module": "liveportrait/base_models/warping_module.pth",
    "spade_generator": "liveportrait/base_models/spade_generator.pth",
    "stitching_retargeting_module": (
        "liveportrait/retargeting_models/stitching_retargeting_module.pth"
    ),
}

#: Sub-net attribute of the stitching module → its key in the checkpoint dict.
_STITCHING_PARTS = ("retarget_shoulder", "retarget_mouth", "retarget_eye")
_DDP_PREFIX = "module."


@dataclass
class LivePortraitNetworks:
    """The five networks, loaded, in eval mode, on one device."""

    appearance_feature_extractor: nn.Module
    motion_extractor: nn.Module
    warping_module: nn.Module
    spade_generator: nn.Module
    stitching_retargeting_module: nn.Module

    def items(self) -> Iterator[tuple[str, nn.Module]]:
        for f in fields(self):
            yield f.name, getattr(self, f.name)


def checkpoint_paths(models_dir: str | Path | None = None) -> dict[str, Path]:
    """Network name → absolute path of its checkpoint in the weights folder."""
    root = resolve_models_dir(models_dir)
    return {name: root / rel for name, rel in CHECKPOINT_FILES.items()}


def missing_weights(models_dir: str | Path | None = None) -> list[Path]:
    """The checkpoint files that are not in the weights folder (empty when all are)."""
    return [path for path in checkpoint_paths(models_dir).values() if not path.is_file()]


def unavailable_reason(models_dir: str | None = None) -> str | None:
    """``None`` when the weights are present (CPU works, slowly); else the first missing file.

    Here rather than in the animator so the registry can ask without importing torch.
    """
    missing = missing_weights(models_dir)
    if missing:
        more = f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"missing {missing[0]}{more}"
    return None


def _strip_ddp(state: Any) -> Any:
    if not isinstance(state, Mapping):
        return state
    return {
        (k[len(_DDP_PREFIX) :] if isinstance(k, str) and k.startswith(_DDP_PREFIX) else k): v
        for k, v in state.items()
    }


def load_network(name: str, models_dir: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """One network with its official weights, in eval mode on ``device``.

    Raises ``WeightsMissing`` naming the missing file, or ``BadCheckpoint`` naming a file
    that is damaged or whose keys or shapes do not match.
    """
    from mirage.models.avatar.liveportrait.networks import build_network

    module = build_network(name)
    path = checkpoint_paths(models_dir)[name]
    data = read_checkpoint(path, "LivePortrait weight file")
    if name == "stitching_retargeting_module":
        if not isinstance(data, Mapping) or any(part not in data for part in _STITCHING_PARTS):
            raise BadCheckpoint(f"{path} must be a dict with the keys {list(_STITCHING_PARTS)}")
        for part in _STITCHING_PARTS:
            sub = getattr(module, part)
            load_strict(sub, _strip_ddp(data[part]), f"{path} [{part}]")
    else:
        load_strict(module, data, str(path))
    return module.to(device).eval()


def load_networks(
    models_dir: str | Path | None = None, device: str = "cpu"
) -> LivePortraitNetworks:
    """All five networks from the weights folder (``mirage.weights.models_dir(models_dir)``).

    Checks every file first, so one ``WeightsMissing`` names all the missing paths.
    """
    missing = missing_weights(models_dir)
    if missing:
        listed = ", ".join(str(p) for p in missing)
        raise WeightsMissing(f"LivePortrait weight files missing: {listed}")
    loaded = {name: load_network(name, models_dir, device) for name in CHECKPOINT_FILES}
    return LivePortraitNetworks(**loaded)


def save_checkpoints(networks: LivePortraitNetworks, models_dir: str | Path) -> list[Path]:
    """Write ``networks`` to ``models_dir`` in the official layout and containers.

    For tests and benchmarks that need a weights folder (e.g. filled with deterministic
    weights); returns the written paths.
    """
    import torch

    paths = checkpoint_paths(models_dir)
    for name, module in networks.items():
        path = paths[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "stitching_retargeting_module":
            payload: Any = {part: getattr(module, part).state_dict() for part in _STITCHING_PARTS}
        else:
            payload = module.state_dict()
        torch.save(payload, path)
    return list(paths.values())
