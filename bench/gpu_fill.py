"""The golden folder's deterministic weight fill, inside the project so it travels.

A copy of what ``bench/gpu.py`` needs from ``shared/golden/fill.py`` (``fill_state`` and
``load_into``), because ``../shared`` does not travel to a lent GPU machine.
``tests/test_gpu_rehearsal.py`` checks that it fills exactly what the shared one fills.

Each tensor depends only on its key, shape and the seed: it is drawn from
``np.random.RandomState((crc32(key) ^ seed) & 0xFFFFFFFF)`` in float64, then cast
(NumPy keeps the legacy stream frozen, so numpy 1 and 2 give the same values). Integer
tensors are 0; ``running_mean`` 0.1·N; ``running_var`` 0.75 + 0.5·U; ``weight_g``
1 + 0.1·N; ≥ 2-D N/sqrt(fan-in); 1-D ``weight``/``gamma`` 1 + 0.1·N; other 1-D 0.05·N.
Spectral-norm ``P.weight_u``/``P.weight_v`` are then set to the top singular pair of
``P.weight_orig`` (30 power iterations in float64).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def _rng(key: str, seed: int) -> np.random.RandomState:
    return np.random.RandomState((zlib.crc32(key.encode("utf-8")) ^ int(seed)) & 0xFFFFFFFF)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), 1e-12)


def fill_tensor(key: str, shape: Iterable[int], dtype: str, seed: int) -> np.ndarray:
    """One tensor by the rule above."""
    shape = tuple(int(s) for s in shape)
    dt = np.dtype(str(dtype).replace("torch.", ""))
    name = key.rsplit(".", 1)[-1]
    if dt.kind in "iub":
        return np.zeros(shape, dtype=dt)
    rng = _rng(key, seed)
    if name == "running_mean":
        x = 0.1 * rng.standard_normal(shape)
    elif name == "running_var":
        x = 0.75 + 0.5 * rng.random_sample(shape)
    elif name == "weight_g":
        x = 1.0 + 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2:
        x = rng.standard_normal(shape) / np.sqrt(float(np.prod(shape[1:])))
    elif name in ("weight", "gamma"):
        x = 1.0 + 0.1 * rng.standard_normal(shape)
    else:
        x = 0.05 * rng.standard_normal(shape)
    return np.asarray(x, dtype=dt)


def fill_state(entries: Iterable[Mapping[str, Any]], seed: int) -> dict[str, np.ndarray]:
    """``{key: array}`` for a manifest's ``state_dict`` entries (dicts with key/shape/dtype)."""
    out = {e["key"]: fill_tensor(e["key"], e["shape"], e["dtype"], seed) for e in entries}
    for key in list(out):
        if not key.endswith(".weight_orig"):
            continue
        prefix = key[: -len("weight_orig")]
        u_key, v_key = prefix + "weight_u", prefix + "weight_v"
        if u_key in out and v_key in out and out[v_key].ndim == 1:
            w = out[key].astype(np.float64).reshape(out[key].shape[0], -1)
            v = _unit(_rng(v_key, seed).standard_normal(w.shape[1]))
            for _ in range(30):
                v = _unit(w.T @ _unit(w @ v))
            out[v_key] = v.astype(out[v_key].dtype)
            out[u_key] = _unit(w @ v).astype(out[u_key].dtype)
    return out


def checksum_ok(arrays: Mapping[str, np.ndarray], checksum: Mapping[str, Any]) -> bool:
    """Whether the fill reproduces a manifest's ``fill.checksum`` (sum, sum_abs, first values)."""
    total = sum(float(a.sum(dtype=np.float64)) for a in arrays.values())
    total_abs = sum(float(np.abs(a).sum(dtype=np.float64)) for a in arrays.values())
    first = arrays[checksum["first_key"]].ravel()[: len(checksum["first_key_first_values"])]
    return bool(
        np.isclose(total, checksum["sum"], rtol=1e-9)
        and np.isclose(total_abs, checksum["sum_abs"], rtol=1e-9)
        and np.allclose(first, checksum["first_key_first_values"], rtol=1e-6)
    )


def load_into(module: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Strict ``load_state_dict`` of the arrays into a torch module."""
    import torch

    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    module.load_state_dict(state, strict=True)
