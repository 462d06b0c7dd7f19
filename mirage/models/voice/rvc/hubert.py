"""Content features for RVC: a fairseq HuBERT/ContentVec checkpoint run by transformers.

RVC ships ``hubert_base.pt`` in fairseq's layout (``{"model": state_dict, "cfg"|"args": …}``).
We map its keys onto transformers' ``HubertModel`` so fairseq is never needed. RVC v1 reads
the output of transformer layer 9 and applies ``final_proj`` (768 → 256); v2 reads layer 12
(768). Layers after the one we read are never built, so v1 runs 9 layers, not 12.
"""

from __future__ import annotations

import argparse
import ast
import collections
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import HubertConfig, HubertModel

from mirage.models.base import WeightsMissing
from mirage.models.checkpoint import BadCheckpoint

#: The transformer layer (1-based, as fairseq's ``output_layer``) each RVC version reads.
OUTPUT_LAYER = {"v1": 9, "v2": 12}

#: fairseq's default ``conv_feature_layers`` for HuBERT base: (dim, kernel, stride).
_DEFAULT_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2

#: Pre-training-only tensors that inference does not need.
_UNUSED = ("label_embs_concat", "target_glu.")

#: Per-layer names: fairseq → transformers (under ``encoder.layers.N.``).
_LAYER_NAMES = {
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "layer_norm",
    "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense",
    "final_layer_norm": "final_layer_norm",
}

#: Top-level names: fairseq → transformers.
_TOP_NAMES = {
    "layer_norm": "feature_projection.layer_norm",
    "post_extract_proj": "feature_projection.projection",
    "encoder.layer_norm": "encoder.layer_norm",
}


@dataclass(frozen=True)
class HubertLayout:
    """The architecture of a fairseq HuBERT checkpoint, read from its tensors and config."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    conv: tuple[tuple[int, int, int], ...]  # (dim, kernel, stride) per feature-extractor layer
    conv_bias: bool
    pos_kernel: int
    pos_groups: int
    final_dim: int

    def transformers_config(self, num_layers: int) -> HubertConfig:
        """A transformers config for this layout, cut to ``num_layers`` layers, no dropout."""
        return HubertConfig(
            hidden_size=self.hidden,
            num_hidden_layers=num_layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            conv_dim=[c[0] for c in self.conv],
            conv_kernel=[c[1] for c in self.conv],
            conv_stride=[c[2] for c in self.conv],
            conv_bias=self.conv_bias,
            num_conv_pos_embeddings=self.pos_kernel,
            num_conv_pos_embedding_groups=self.pos_groups,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
            feat_proj_layer_norm=True,
            hidden_act="gelu",
            feat_extract_activation="gelu",
            layer_norm_eps=1e-5,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            feat_proj_dropout=0.0,
            layerdrop=0.0,
            apply_spec_augment=False,
        )


class _Opaque:
    """Stand-in for any pickled class we do not trust (fairseq meters, omegaconf nodes)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Opaque:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles tensors, containers and ``Namespace``; every other class becomes ``_Opaque``.

    fairseq checkpoints carry fairseq/omegaconf objects in ``cfg``/``extra_state``; this
    reads them without importing (or executing) anything from those packages.
    """

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("argparse", "Namespace"): argparse.Namespace,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch._utils" and name.startswith("_rebuild_"):
            return getattr(torch._utils, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _Opaque


_SAFE_PICKLE = SimpleNamespace(Unpickler=_SafeUnpickler, __name__="mirage_safe_pickle")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a fairseq checkpoint dict.

    ``WeightsMissing`` when the file is absent, ``BadCheckpoint`` naming it when unusable.
    """
    if not path.is_file():
        raise WeightsMissing(f"HuBERT weights not found: {path}")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            ckpt = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=_SAFE_PICKLE
            )
    except Exception as exc:  # torch raises many kinds on a damaged file
        raise BadCheckpoint(f"cannot read HuBERT checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise BadCheckpoint(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    return dict(ckpt)


def _model_cfg(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The model section of ``cfg`` (fairseq ≥ 0.10) or the ``args`` namespace (older)."""
    cfg = ckpt.get("cfg")
    if isinstance(cfg, Mapping) and isinstance(cfg.get("model"), Mapping):
        return dict(cfg["model"])
    args = ckpt.get("args")
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    return {}


def _eval_conv_spec(text: str) -> tuple[tuple[int, int, int], ...]:
    """Evaluate fairseq's ``conv_feature_layers`` (lists of int tuples, ``+`` and ``*``) safely."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
            left, right = ev(node.left), ev(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported conv_feature_layers element: {ast.dump(node)}")

    spec = ev(ast.parse(text, mode="eval").body)
    return tuple((int(d), int(k), int(s)) for d, k, s in spec)


def read_layout(state: Mapping[str, torch.Tensor], cfg: Mapping[str, Any]) -> HubertLayout:
    """Read the architecture from tensor shapes; heads and strides come from the config."""
    if cfg.get("extractor_mode", "default") != "default" or cfg.get("layer_norm_first", False):
        raise ValueError("only HuBERT base layouts (group-norm extractor, post-LN) are supported")
    n_conv = len({k.split(".")[2] for k in state if k.startswith("feature_extractor.conv_layers.")})
    spec = cfg.get("conv_feature_layers")
    if isinstance(spec, str):
        conv = _eval_conv_spec(spec)
    else:  # no config: widths and kernels from the tensors, strides as in HuBERT base
        shapes = [state[f"feature_extractor.conv_layers.{i}.0.weight"].shape for i in range(n_conv)]
        strides = [s for _, _, s in _DEFAULT_CONV][:n_conv]
        conv = tuple((int(sh[0]), int(sh[2]), st) for sh, st in zip(shapes, strides, strict=False))
    if len(conv) != n_conv:
        raise ValueError(f"config lists {len(conv)} conv layers, the weights have {n_conv}")
    for i, (dim, kernel, _) in enumerate(conv):
        shape = tuple(state[f"feature_extractor.conv_layers.{i}.0.weight"].shape)
        if shape[0] != dim or shape[2] != kernel:
            raise ValueError(f"conv layer {i} has shape {shape}, config says dim {dim} k {kernel}")
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    hidden, fan_in, pos_kernel = state["encoder.pos_conv.0.weight_v"].shape
    return HubertLayout(
        hidden=int(hidden),
        layers=layers,
        heads=int(cfg.get("encoder_attention_heads", 12)),
        ffn=int(state["encoder.layers.0.fc1.weight"].shape[0]),
        conv=conv,
        conv_bias="feature_extractor.conv_layers.0.0.bias" in state,
        pos_kernel=int(pos_kernel),
        pos_groups=int(hidden) // int(fan_in),
        final_dim=int(state["final_proj.weight"].shape[0]),
    )


def map_state(
    state: Mapping[str, torch.Tensor], num_layers: int, weight_norm_keys: tuple[str, str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """Map fairseq keys to (transformers ``HubertModel`` keys, ``final_proj`` keys, dropped keys).

    Every key is accounted for: a key that is neither mapped nor known-unused raises, so a
    checkpoint with an unexpected layout fails loudly instead of loading half its weights.
    ``weight_norm_keys`` are the model's names for the positional conv's (g, v).
    """
    hf: dict[str, torch.Tensor] = {}
    proj: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith(_UNUSED):
            dropped.append(key)
        elif key.startswith("feature_extractor.conv_layers."):
            layer, sub, leaf = parts[2], parts[3], parts[4]
            if sub == "0":
                hf[f"feature_extractor.conv_layers.{layer}.conv.{leaf}"] = value
            elif sub == "2" and layer == "0":
                hf[f"feature_extractor.conv_layers.0.layer_norm.{leaf}"] = value
            else:
                raise ValueError(f"unexpected feature-extractor key {key}")
        elif key.startswith("encoder.layers."):
            index, name, leaf = int(parts[2]), ".".join(parts[3:-1]), parts[-1]
            if name not in _LAYER_NAMES:
                raise ValueError(f"unexpected encoder-layer key {key}")
            if index >= num_layers:
                dropped.append(key)
            else:
                hf[f"encoder.layers.{index}.{_LAYER_NAMES[name]}.{leaf}"] = value
        elif key.startswith("encoder.pos_conv.0."):
            leaf = parts[-1]
            prefix = "encoder.pos_conv_embed.conv."
            names = {"weight_g": weight_norm_keys[0], "weight_v": weight_norm_keys[1]}
            hf[prefix + names.get(leaf, leaf)] = value
        elif key == "mask_emb":
            hf["masked_spec_embed"] = value
        elif key.startswith("final_proj."):
            proj[parts[-1]] = value
        elif ".".join(parts[:-1]) in _TOP_NAMES:
            hf[f"{_TOP_NAMES['.'.join(parts[:-1])]}.{parts[-1]}"] = value
        else:
            raise ValueError(f"unexpected HuBERT key {key}")
    return hf, proj, dropped


class ContentEncoder(nn.Module):
    """16 kHz waveform → RVC content features (50 frames/s): layer N, plus final_proj for v1."""

    def __init__(self, layout: HubertLayout, version: str) -> None:
        super().__init__()
        if version not in OUTPUT_LAYER:
            raise ValueError(f"unknown RVC version {version!r}; expected v1 or v2")
        self.version = version
        self.output_layer = OUTPUT_LAYER[version]
        if layout.layers < self.output_layer:
            raise ValueError(
                f"RVC {version} reads layer {self.output_layer}; the model has {layout.layers}"
            )
        self.layout = layout
        self.hubert = HubertModel(layout.transformers_config(self.output_layer))
        self.final_proj = nn.Linear(layout.hidden, layout.final_dim)
        self.eval()

    @property
    def dim(self) -> int:
        """Feature width the synthesizer expects: 256 (v1) or 768 (v2)."""
        return self.layout.final_dim if self.version == "v1" else self.layout.hidden

    def weight_norm_keys(self) -> tuple[str, str]:
        keys = self.hubert.state_dict().keys()
        if "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in keys:
            return "parametrizations.weight.original0", "parametrizations.weight.original1"
        return "weight_g", "weight_v"

    def load_fairseq(self, state: Mapping[str, torch.Tensor]) -> list[str]:
        """Load a fairseq state dict (strict on what is used); return the keys left unused."""
        hf, proj, dropped = map_state(state, self.output_layer, self.weight_norm_keys())
        self.hubert.load_state_dict({k: v.float() for k, v in hf.items()}, strict=True)
        self.final_proj.load_state_dict({k: v.float() for k, v in proj.items()}, strict=True)
        return dropped

    @torch.inference_mode()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) float waveform at 16 kHz → (B, T, dim), T = (N - 400) // 320 + 1."""
        hidden: torch.Tensor = self.hubert(input_values=wav).last_hidden_state
        return self.final_proj(hidden) if self.version == "v1" else hidden


def load_content_encoder(path: Path, version: str) -> ContentEncoder:
    """Read ``hubert_base.pt`` and build the encoder for RVC ``version`` (CPU, float32, eval)."""
    ckpt = read_checkpoint(path)
    state = ckpt["model"]
    try:
        layout = read_layout(state, _model_cfg(ckpt))
        encoder = ContentEncoder(layout, version)
        encoder.load_fairseq(state)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise BadCheckpoint(f"{path} does not fit a HuBERT base layout: {exc}") from exc
    return encoder
