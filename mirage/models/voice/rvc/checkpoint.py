"""Users' RVC weight files: the inference ``.pth`` container and ``rmvpe.pt``.

An RVC ``.pth`` (written by the WebUI's ``extract_small_model``/``savee``) is a dict
``{weight, config, info, sr, f0, version}`` with float16 weights and no ``enc_q.*``
keys. It loads unchanged: the version picks v1/v2, ``config`` the architecture, and
the speaker count is read from ``emb_g.weight`` as upstream does. Files are read with
``weights_only=True``, so a file that needs arbitrary code to unpickle is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mirage.models.checkpoint import BadCheckpoint, load_strict, read_checkpoint
from mirage.models.voice.rvc.files import INDEX_FILE, MODEL_FILE, RMVPE_FILE
from mirage.models.voice.rvc.rmvpe import Rmvpe
from mirage.models.voice.rvc.synthesizer import (
    DEFAULT_NOISE_SCALE,
    PHONE_DIMS,
    Synthesizer,
    SynthesizerConfig,
)
from mirage.weights import weight_file

_CONTAINER_KEYS = ("weight", "config")



@dataclass(frozen=True)
class RvcModelInfo:
    """What an RVC ``.pth`` says about itself."""

    path: Path
    version: str
    config: SynthesizerConfig
    f0: bool
    info: str
    sr: str

    @property
    def sample_rate(self) -> int:
        return self.config.sr

    @property
    def speakers(self) -> int:
        return self.config.spk_embed_dim


def model_path(models_dir: str | Path | None = None) -> Path:
    """``<weights>/rvc/model.pth``."""
    return weight_file(MODEL_FILE, models_dir)


def index_path(models_dir: str | Path | None = None) -> Path:
    """``<weights>/rvc/features.index`` (optional retrieval index)."""
    return weight_file(INDEX_FILE, models_dir)


def rmvpe_path(models_dir: str | Path | None = None) -> Path:
    """``<weights>/rmvpe/rmvpe.pt``."""
    return weight_file(RMVPE_FILE, models_dir)


def read_rvc_info(raw: Any, path: Path) -> RvcModelInfo:
    """Validate an RVC container's header fields; ``BadCheckpoint`` naming ``path``."""
    if not isinstance(raw, Mapping) or any(k not in raw for k in _CONTAINER_KEYS):
        found = sorted(map(str, raw)) if isinstance(raw, Mapping) else type(raw).__name__
        raise BadCheckpoint(
            f"{path} is not an RVC inference model (a dict with 'weight' and 'config'); "
            f"found {found}"
        )
    weights = raw["weight"]
    if not isinstance(weights, Mapping) or not isinstance(weights.get("emb_g.weight"), Tensor):
        raise BadCheckpoint(f"{path}: 'weight' lacks the speaker table emb_g.weight")
    version = str(raw.get("version", "v1"))
    if version not in PHONE_DIMS:
        raise BadCheckpoint(f"{path}: unsupported RVC version {version!r} (v1 or v2)")
    f0 = bool(int(raw.get("f0", 1)))
    if not f0:
        raise BadCheckpoint(f"{path}: models without pitch guidance (f0=0) are not supported")
    values = list(raw["config"])
    try:
        values[-3] = int(weights["emb_g.weight"].shape[0])  # speaker count, as upstream
        config = SynthesizerConfig.from_list(values)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise BadCheckpoint(f"{path}: bad 'config' {values!r}: {exc}") from exc
    return RvcModelInfo(path, version, config, f0, str(raw.get("info", "")), str(raw.get("sr", "")))


def load_synthesizer(
    path: str | Path | None = None,
    *,
    models_dir: str | Path | None = None,
    noise_scale: float = DEFAULT_NOISE_SCALE,
    nsf_noise_scale: float = 1.0,
) -> tuple[Synthesizer, RvcModelInfo]:
    """Read an RVC ``.pth`` (default ``<weights>/rvc/model.pth``) into a float32 CPU eval model.

    Raises ``WeightsMissing`` when the file is absent, ``BadCheckpoint`` (a ``WeightsMissing``
    too: HTTP 503) when it is unreadable, foreign, of an unsupported kind, or its keys do not
    match.
    """
    file = Path(path) if path is not None else model_path(models_dir)
    raw = read_checkpoint(file, "RVC model")
    info = read_rvc_info(raw, file)
    weights = {k: v for k, v in raw["weight"].items() if not str(k).startswith("enc_q.")}
    model = Synthesizer(info.config, info.version, noise_scale, nsf_noise_scale)
    load_strict(model, weights, f"RVC model {file}")
    return model.eval(), info


def load_rmvpe(path: str | Path | None = None, *, models_dir: str | Path | None = None) -> Rmvpe:
    """Read ``rmvpe.pt`` (default ``<weights>/rmvpe/rmvpe.pt``) into a float32 CPU eval model."""
    file = Path(path) if path is not None else rmvpe_path(models_dir)
    raw = read_checkpoint(file, "RMVPE weights")
    if not isinstance(raw, Mapping):
        raise BadCheckpoint(f"{file} is not an RMVPE state dict (got {type(raw).__name__})")
    model = Rmvpe()
    load_strict(model, raw, f"RMVPE weights {file}")
    return model.eval()


def save_synthesizer(
    path: str | Path,
    model: Synthesizer,
    *,
    info: str = "",
    half: bool = True,
) -> Path:
    """Write ``model`` as an RVC inference ``.pth`` (the layout the WebUI writes)."""
    cfg = model.cfg
    config: list[Any] = [
        cfg.spec_channels, cfg.segment_size, cfg.inter_channels, cfg.hidden_channels,
        cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size, cfg.p_dropout,
        cfg.resblock, list(cfg.resblock_kernel_sizes),
        [list(d) for d in cfg.resblock_dilation_sizes], list(cfg.upsample_rates),
        cfg.upsample_initial_channel, list(cfg.upsample_kernel_sizes), cfg.spk_embed_dim,
        cfg.gin_channels, cfg.sr,
    ]  # fmt: skip
    dtype = torch.float16 if half else torch.float32
    weight = {k: v.detach().to(dtype).cpu() for k, v in model.state_dict().items()}
    sr = f"{cfg.sr // 1000}k"
    container = {
        "weight": weight,
        "config": config,
        "info": info,
        "sr": sr,
        "f0": 1,
        "version": model.version,
    }
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(container, file)
    return file
