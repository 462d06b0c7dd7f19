"""The fairseq → transformers HuBERT key mapping, checked against a direct computation.

A small HuBERT is built in fairseq's exact state-dict layout (every key a real
``hubert_base.pt`` has: conv extractor with group norm, weight-normed positional
conv, post-LN transformer layers, ``final_proj``, ``label_embs_concat``), run through
our mapped transformers model, and compared with an independent functional
implementation of fairseq's forward pass written here from the architecture.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mirage.models.base import WeightsMissing
from mirage.models.checkpoint import BadCheckpoint
from mirage.models.voice.rvc import hubert
from tests.speech import speech

HIDDEN, HEADS, FFN, CONV_DIM, POS_K, POS_G, FINAL, LAYERS = 32, 4, 48, 24, 8, 4, 16, 12
CONV = [(CONV_DIM, 10, 5)] + [(CONV_DIM, 3, 2)] * 4 + [(CONV_DIM, 2, 2)] * 2
CONV_SPEC = f"[({CONV_DIM},10,5)] + [({CONV_DIM},3,2)] * 4 + [({CONV_DIM},2,2)] * 2"


def fairseq_state(
    seed: int = 0, final: int = FINAL, layers: int = LAYERS
) -> dict[str, torch.Tensor]:
    """A fairseq HubertModel state dict (base layout, small widths), random weights."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float | None = None) -> torch.Tensor:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        std = scale if scale is not None else 1.0 / math.sqrt(fan_in)
        return torch.randn(*shape, generator=gen) * std

    def norm(prefix: str, n: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + rand(n, scale=0.1), f"{prefix}.bias": rand(n, scale=0.05)}

    def linear(prefix: str, out: int, inp: int) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": rand(out, inp), f"{prefix}.bias": rand(out, scale=0.05)}

    sd: dict[str, torch.Tensor] = {}
    inp = 1
    for i, (dim, k, _) in enumerate(CONV):
        sd[f"feature_extractor.conv_layers.{i}.0.weight"] = rand(dim, inp, k)
        if i == 0:
            sd |= norm("feature_extractor.conv_layers.0.2", dim)
        inp = dim
    sd |= norm("layer_norm", CONV_DIM)
    sd |= linear("post_extract_proj", HIDDEN, CONV_DIM)
    sd["mask_emb"] = torch.rand(HIDDEN, generator=gen)
    sd["encoder.pos_conv.0.bias"] = rand(HIDDEN, scale=0.05)
    sd["encoder.pos_conv.0.weight_g"] = 1 + rand(1, 1, POS_K, scale=0.1)
    sd["encoder.pos_conv.0.weight_v"] = rand(HIDDEN, HIDDEN // POS_G, POS_K)
    for n in range(layers):
        p = f"encoder.layers.{n}"
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            sd |= linear(f"{p}.self_attn.{name}", HIDDEN, HIDDEN)
        sd |= norm(f"{p}.self_attn_layer_norm", HIDDEN)
        sd |= linear(f"{p}.fc1", FFN, HIDDEN)
        sd |= linear(f"{p}.fc2", HIDDEN, FFN)
        sd |= norm(f"{p}.final_layer_norm", HIDDEN)
    sd |= norm("encoder.layer_norm", HIDDEN)
    sd |= linear("final_proj", final, HIDDEN)
    sd["label_embs_concat"] = rand(504, final)
    return sd


def reference(sd: dict[str, torch.Tensor], wav: torch.Tensor, layer: int) -> torch.Tensor:
    """fairseq HubertModel.extract_features(output_layer=layer)[0], computed directly."""
    x = wav[:, None, :]
    for i, (dim, _, stride) in enumerate(CONV):
        x = F.conv1d(x, sd[f"feature_extractor.conv_layers.{i}.0.weight"], stride=stride)
        if i == 0:
            g = "feature_extractor.conv_layers.0.2"
            x = F.group_norm(x, dim, sd[f"{g}.weight"], sd[f"{g}.bias"], eps=1e-5)
        x = F.gelu(x)
    x = F.layer_norm(x.transpose(1, 2), (CONV_DIM,), sd["layer_norm.weight"], sd["layer_norm.bias"])
    x = F.linear(x, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    v, g = sd["encoder.pos_conv.0.weight_v"], sd["encoder.pos_conv.0.weight_g"]
    w = g * v / v.norm(dim=(0, 1), keepdim=True)  # weight norm over dim 2
    pos = F.conv1d(
        x.transpose(1, 2), w, sd["encoder.pos_conv.0.bias"], padding=POS_K // 2, groups=POS_G
    )
    pos = F.gelu(pos[:, :, :-1] if POS_K % 2 == 0 else pos)
    x = x + pos.transpose(1, 2)
    x = F.layer_norm(x, (HIDDEN,), sd["encoder.layer_norm.weight"], sd["encoder.layer_norm.bias"])
    head_dim = HIDDEN // HEADS
    for n in range(layer):
        p = f"encoder.layers.{n}"

        def lin(name: str, t: torch.Tensor, p: str = p) -> torch.Tensor:
            return F.linear(t, sd[f"{p}.{name}.weight"], sd[f"{p}.{name}.bias"])

        b, t, _ = x.shape
        q, k, vv = (
            lin(f"self_attn.{m}_proj", x).view(b, t, HEADS, head_dim).transpose(1, 2) for m in "qkv"
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1) @ vv
        x = x + lin("self_attn.out_proj", att.transpose(1, 2).reshape(b, t, HIDDEN))
        x = F.layer_norm(
            x,
            (HIDDEN,),
            sd[f"{p}.self_attn_layer_norm.weight"],
            sd[f"{p}.self_attn_layer_norm.bias"],
        )
        x = x + lin("fc2", F.gelu(lin("fc1", x)))
        x = F.layer_norm(
            x, (HIDDEN,), sd[f"{p}.final_layer_norm.weight"], sd[f"{p}.final_layer_norm.bias"]
        )
    return x


def checkpoint(sd: dict[str, torch.Tensor], use_args: bool = False) -> dict[str, object]:
    """The dict fairseq's ``save_checkpoint`` writes: model, cfg (or args), extra state."""
    model_cfg = {
        "_name": "hubert",
        "extractor_mode": "default",
        "conv_feature_layers": CONV_SPEC,
        "encoder_attention_heads": HEADS,
        "encoder_layers": LAYERS,
        "layer_norm_first": False,
    }
    ckpt: dict[str, object] = {"model": sd, "optimizer_history": [], "extra_state": {}}
    if use_args:
        ckpt["args"] = argparse.Namespace(**model_cfg)
    else:
        ckpt["cfg"] = {"model": model_cfg, "task": {"sample_rate": 16000}}
    return ckpt


class Meter:
    """Stands for a fairseq object pickled into ``extra_state`` (e.g. a metrics meter)."""

    def __init__(self) -> None:
        self.avg = 1.5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def audio() -> torch.Tensor:
    return torch.from_numpy(np.array(speech()[8000:24000]))[None]


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return fairseq_state()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_mapped_model_equals_direct_fairseq_computation(
    state: dict[str, torch.Tensor], audio: torch.Tensor, version: str
) -> None:
    cfg = checkpoint(state)["cfg"]
    assert isinstance(cfg, dict)
    encoder = hubert.ContentEncoder(hubert.read_layout(state, cfg["model"]), version)
    dropped = encoder.load_fairseq(state)
    layer = hubert.OUTPUT_LAYER[version]
    # every key is used, except pre-training labels and the layers after the one read
    unused_layers = {
        k for k in state if k.startswith("encoder.layers.") and int(k.split(".")[2]) >= layer
    }
    assert set(dropped) == {"label_embs_concat"} | unused_layers
    with torch.no_grad():
        want = reference(state, audio, layer)
        if version == "v1":
            want = F.linear(want, state["final_proj.weight"], state["final_proj.bias"])
    got = encoder(audio)
    assert got.shape == (1, (audio.shape[1] - 400) // 320 + 1, FINAL if version == "v1" else HIDDEN)
    assert encoder.dim == got.shape[-1]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_every_key_changes_the_output_it_should(
    state: dict[str, torch.Tensor], audio: torch.Tensor
) -> None:
    """A perturbed key moves the output: the mapping did not silently drop it."""
    layout = hubert.read_layout(state, {"encoder_attention_heads": HEADS})
    base = hubert.ContentEncoder(layout, "v1")
    base.load_fairseq(state)
    ref = base(audio)
    for key in (
        "feature_extractor.conv_layers.0.2.weight",
        "encoder.pos_conv.0.weight_g",
        "post_extract_proj.bias",
        "encoder.layers.8.fc2.weight",
        "final_proj.bias",
    ):
        bumped = dict(state)
        bumped[key] = state[key] * 1.5 + 0.1
        enc = hubert.ContentEncoder(layout, "v1")
        enc.load_fairseq(bumped)
        assert (enc(audio) - ref).abs().max() > 1e-3, key


def test_layout_read_from_tensors_and_config(state: dict[str, torch.Tensor]) -> None:
    layout = hubert.read_layout(
        state, {"conv_feature_layers": CONV_SPEC, "encoder_attention_heads": HEADS}
    )
    assert layout == hubert.HubertLayout(
        hidden=HIDDEN,
        layers=LAYERS,
        heads=HEADS,
        ffn=FFN,
        conv=tuple(CONV),
        conv_bias=False,
        pos_kernel=POS_K,
        pos_groups=POS_G,
        final_dim=FINAL,
    )


def test_unknown_key_is_refused(state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="unexpected HuBERT key"):
        hubert.map_state(state | {"decoder.weight": torch.zeros(1)}, 9, ("weight_g", "weight_v"))


def test_too_few_layers_for_the_version(state: dict[str, torch.Tensor]) -> None:
    small = {
        k: v
        for k, v in state.items()
        if not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= 10)
    }
    layout = hubert.read_layout(small, {"encoder_attention_heads": HEADS})
    hubert.ContentEncoder(layout, "v1")  # layer 9 exists
    with pytest.raises(ValueError, match="reads layer 12"):
        hubert.ContentEncoder(layout, "v2")


@pytest.mark.parametrize("use_args", [False, True])
def test_load_from_fairseq_checkpoint_file(
    tmp_path: Path, state: dict[str, torch.Tensor], audio: torch.Tensor, use_args: bool
) -> None:
    """Both fairseq containers load: ``cfg`` dict and old ``args`` Namespace with foreign
    pickled objects (read without importing their classes)."""
    ckpt = checkpoint({k: v.half() for k, v in state.items()}, use_args=use_args)
    ckpt["extra_state"] = {"metrics": {"loss": Meter()}}
    path = tmp_path / "hubert_base.pt"
    torch.save(ckpt, path)
    encoder = hubert.load_content_encoder(path, "v2")
    assert encoder.layout.heads == HEADS
    want = reference({k: v.half().float() for k, v in state.items()}, audio, 12)
    torch.testing.assert_close(encoder(audio), want, rtol=1e-4, atol=1e-4)


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "hubert" / "hubert_base.pt"
    with pytest.raises(WeightsMissing, match=r"hubert_base\.pt"):
        hubert.load_content_encoder(path, "v1")


def test_corrupt_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "hubert_base.pt"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(BadCheckpoint, match=r"cannot read .*hubert_base\.pt"):
        hubert.load_content_encoder(path, "v1")


def test_wrong_container_names_it(tmp_path: Path, state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "hubert_base.pt"
    torch.save(state, path)  # a bare state dict, not fairseq's container
    with pytest.raises(BadCheckpoint, match="not a fairseq checkpoint"):
        hubert.load_content_encoder(path, "v1")
    torch.save({"model": {k: v for k, v in state.items() if "fc1" not in k}}, path)
    with pytest.raises(BadCheckpoint, match="does not fit a HuBERT base layout"):
        hubert.load_content_encoder(path, "v1")
