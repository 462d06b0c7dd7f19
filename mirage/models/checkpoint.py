"""Reading a weight file and checking it against its network, for every backend.

A damaged or foreign file in the server's weights folder is the server's fault, not
the client's: the client cannot repair it, and asking again later (after an operator
replaces the file) is its only remedy. So ``BadCheckpoint`` is a ``WeightsMissing``
(HTTP 503, like an absent file), for LivePortrait, RVC, HuBERT, RMVPE and the
landmark model alike. torch is imported inside the functions that need it.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirage.models.base import WeightsMissing

if TYPE_CHECKING:
    import torch
    from torch import nn

#: How many key names an error message lists before it says "…".
LISTED = 5


class BadCheckpoint(WeightsMissing):
    """A weight file that exists but cannot be used (unreadable, foreign, wrong keys or
    shapes): either way the backend has no usable weights."""


def read_checkpoint(path: Path, what: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (a file that needs code to unpickle is
    refused); ``WeightsMissing`` when absent, ``BadCheckpoint`` naming it when unreadable."""
    import torch

    if not path.is_file():
        raise WeightsMissing(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).partition("WeightsUnpickler error:")[2].strip()
        detail = detail.split("\n")[0].split(". ")[0]
        if "global" in detail:  # it needs code beyond tensors and plain containers
            raise BadCheckpoint(
                f"refused to read {what} {path}: it holds more than tensors and plain data "
                f"({detail})"
            ) from exc
        raise BadCheckpoint(f"cannot read {what} {path}: {detail or exc}") from exc
    except Exception as exc:  # torch raises many types for a damaged file
        raise BadCheckpoint(f"cannot read {what} {path}: {exc}") from exc


def _listed(keys: list[str]) -> str:
    return f"{len(keys)} {keys[:LISTED]}{' …' if len(keys) > LISTED else ''}"


def check_state_dict(module: nn.Module, state: Any, label: str) -> dict[str, torch.Tensor]:
    """``state``'s tensors, cast to ``module``'s dtypes, once every key and shape matches
    ``module``'s own state_dict; else ``BadCheckpoint`` starting with ``label`` (the file,
    and the part of it)."""
    import torch

    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise BadCheckpoint(f"{label} is not a state_dict of tensors")
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    if missing or unexpected:
        raise BadCheckpoint(
            f"{label} does not match the network: missing keys {_listed(missing)}, "
            f"unexpected keys {_listed(unexpected)}"
        )
    out: dict[str, torch.Tensor] = {}
    for key, ref in expected.items():
        value = state[key]
        shape = tuple(value.shape)
        legacy_scalar = ref.dim() == 0 and shape == (1,)  # torch itself accepts this form
        if shape != tuple(ref.shape) and not legacy_scalar:
            raise BadCheckpoint(f"{label}: {key} has shape {shape}, expected {tuple(ref.shape)}")
        out[key] = value.to(ref.dtype)
    return out


def load_strict(module: nn.Module, state: Any, label: str) -> None:
    """Copy ``state`` into ``module`` after ``check_state_dict``."""
    module.load_state_dict(check_state_dict(module, state, label), strict=True)
