"""RVC ``.pth`` containers and ``rmvpe.pt``: written here in the real layout, loaded unchanged."""

from __future__ import annotations

import collections
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mirage.models.base import WeightsMissing
from mirage.models.checkpoint import BadCheckpoint
from mirage.models.voice.rvc.checkpoint import (
    load_rmvpe,
    load_synthesizer,
    model_path,
    save_synthesizer,
)
from mirage.models.voice.rvc.synthesizer import DEFAULT_NOISE_SCALE, Synthesizer
from tests.test_rvc_networks import filled, golden, inputs, manifest

Writer = Callable[..., Path]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fill_of(name: str) -> dict[str, np.ndarray]:
    """The golden fill (checksum-verified, shared with test_rvc_networks) as arrays."""
    return {k: v.numpy() for k, v in filled(name).state_dict().items()}


@pytest.fixture(scope="module")
def fills() -> dict[str, dict[str, np.ndarray]]:
    return {name: fill_of(name) for name in ("rvc_v1_40k", "rvc_v2_40k")}


def container(name: str, arrays: dict[str, np.ndarray], **fields: Any) -> dict[str, Any]:
    """What the WebUI's ``extract_small_model`` writes: fp16 weights, no ``enc_q.*``."""
    weight = collections.OrderedDict(
        (k, torch.from_numpy(v).half()) for k, v in arrays.items() if not k.startswith("enc_q.")
    )
    data: dict[str, Any] = collections.OrderedDict(
        weight=weight,
        config=list(manifest(name)["constructor"]["positional_config"]),
        info="300epoch",
        sr="40k",
        f0=1,
        version="v2" if name == "rvc_v2_40k" else "v1",
    )
    data.update(fields)
    return data


def write(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def assert_holds_fp16_of(model: torch.nn.Module, arrays: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    assert list(state) == list(arrays)
    for key, value in arrays.items():
        assert state[key].dtype == torch.float32
        expected = value.astype(np.float16).astype(np.float32)
        assert np.array_equal(state[key].numpy(), expected), key


def test_v2_container_loads_from_the_weights_folder(
    tmp_path: Path, fills: dict[str, dict[str, np.ndarray]]
) -> None:
    arrays = fills["rvc_v2_40k"]
    write(tmp_path / "rvc" / "model.pth", container("rvc_v2_40k", arrays))
    model, info = load_synthesizer(models_dir=tmp_path)
    assert model_path(tmp_path) == tmp_path / "rvc" / "model.pth"
    assert isinstance(model, Synthesizer) and model.version == "v2" and not model.training
    assert (info.version, info.sr, info.info, info.sample_rate, info.speakers) == (
        "v2",
        "40k",
        "300epoch",
        40000,
        109,
    )
    assert model.noise_scale == DEFAULT_NOISE_SCALE and model.nsf_noise_scale == 1.0
    assert_holds_fp16_of(model, arrays)
    # fp16-rounded weights still give (nearly) the golden audio once noise is off.
    model.noise_scale = model.nsf_noise_scale = 0.0
    arrays_out = golden("rvc_v2_40k")
    with torch.no_grad():
        audio = model(**inputs("rvc_v2_40k", arrays_out, "case0"))["audio"].numpy().ravel()
    ref = arrays_out["case0/out/audio"].ravel()
    assert np.corrcoef(audio, ref)[0, 1] > 0.99


def test_v1_container_loads_from_any_path(
    tmp_path: Path, fills: dict[str, dict[str, np.ndarray]]
) -> None:
    arrays = fills["rvc_v1_40k"]
    path = write(tmp_path / "voices" / "alice_e300.pth", container("rvc_v1_40k", arrays))
    model, info = load_synthesizer(str(path), noise_scale=0.0, nsf_noise_scale=0.0)
    assert info.version == "v1" and info.path == path
    assert model.enc_p.emb_phone.in_features == 256
    assert model.noise_scale == 0.0 and model.nsf_noise_scale == 0.0
    assert_holds_fp16_of(model, arrays)


def test_upstream_quirks_are_accepted(
    tmp_path: Path, fills: dict[str, dict[str, np.ndarray]]
) -> None:
    """No version (v1 by default), a 5th upsample kernel, training keys, 4 speakers."""
    arrays = dict(fills["rvc_v1_40k"])
    arrays["emb_g.weight"] = arrays["emb_g.weight"][:4]
    data = container("rvc_v1_40k", arrays)
    del data["version"]
    data["config"][14] = [16, 16, 4, 4, 4]
    data["weight"]["enc_q.pre.bias"] = torch.zeros(192, dtype=torch.float16)
    model, info = load_synthesizer(write(tmp_path / "m.pth", data))
    assert info.version == "v1" and info.speakers == 4
    assert model.emb_g.num_embeddings == 4 and len(model.dec.ups) == 4
    assert "enc_q.pre.bias" not in model.state_dict()


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    model, _ = load_synthesizer_from_scratch(tmp_path)
    path = save_synthesizer(tmp_path / "out" / "model.pth", model, info="5epoch")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"weight", "config", "info", "sr", "f0", "version"}
    assert raw["sr"] == "40k" and raw["version"] == "v2" and raw["config"][-1] == 40000
    assert all(v.dtype == torch.float16 for v in raw["weight"].values())
    again, info = load_synthesizer(path)
    assert info.config == model.cfg and info.info == "5epoch"
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value.half().float()), key


def load_synthesizer_from_scratch(tmp_path: Path) -> tuple[Synthesizer, Path]:
    """A randomly initialised v2 model written by ``save_synthesizer`` and read back."""
    from mirage.models.voice.rvc.build import build_network

    net = build_network("rvc_v2_40k")
    assert isinstance(net, Synthesizer)
    path = save_synthesizer(tmp_path / "scratch.pth", net)
    model, _ = load_synthesizer(path)
    return model, path


# ---- errors: each names the file -------------------------------------------------------


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing, match=re.escape(str(tmp_path / "rvc" / "model.pth"))):
        load_synthesizer(models_dir=tmp_path)
    with pytest.raises(WeightsMissing, match=r"nope\.pth"):
        load_synthesizer(tmp_path / "nope.pth")


def test_missing_rmvpe_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing, match=re.escape(str(tmp_path / "rmvpe" / "rmvpe.pt"))):
        load_rmvpe(models_dir=tmp_path)


def test_corrupt_files_are_a_server_fault(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(BadCheckpoint, match=r"garbage\.pth") as err:
        load_synthesizer(garbage)
    # Like an absent file (503): the client cannot repair the server's weights folder.
    assert isinstance(err.value, WeightsMissing) and err.value.status == 503
    with pytest.raises(BadCheckpoint, match=r"garbage\.pth"):
        load_rmvpe(garbage)
    # A real container cut short.
    _, path = load_synthesizer_from_scratch(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadCheckpoint, match=r"truncated\.pth"):
        load_synthesizer(truncated)


class _Payload:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (print, ("this must never run",))


def test_files_that_need_code_to_unpickle_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as f:
        pickle.dump({"weight": _Payload(), "config": []}, f, protocol=2)
    with pytest.raises(BadCheckpoint, match=r"refused .*evil\.pth.*print"):
        load_synthesizer(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["weight"].pop("dec.conv_post.weight"), "missing keys"),
        (lambda d: d["weight"].__setitem__("dec.extra.weight", torch.zeros(1)), "unexpected"),
        (lambda d: d["weight"].__setitem__("enc_p.proj.bias", torch.zeros(7)), "shape"),
        (lambda d: d.__setitem__("version", "v3"), "unsupported RVC version"),
        (lambda d: d.__setitem__("f0", 0), "without pitch"),
        (lambda d: d.__setitem__("config", d["config"][:5]), "bad 'config'"),
        (lambda d: d.pop("weight"), "not an RVC inference model"),
        (lambda d: d["weight"].pop("emb_g.weight"), "emb_g.weight"),
    ],
)
def test_wrong_containers_name_the_file(
    tmp_path: Path,
    fills: dict[str, dict[str, np.ndarray]],
    change: Callable[[dict[str, Any]], object],
    message: str,
) -> None:
    data = container("rvc_v2_40k", fills["rvc_v2_40k"])
    change(data)
    path = write(tmp_path / "broken_model.pth", data)
    with pytest.raises(BadCheckpoint, match=message) as err:
        load_synthesizer(path)
    assert "broken_model.pth" in str(err.value)


def test_a_bare_tensor_is_not_a_model(tmp_path: Path) -> None:
    path = write(tmp_path / "tensor.pth", torch.zeros(3))
    with pytest.raises(BadCheckpoint, match=r"tensor\.pth"):
        load_synthesizer(path)
    with pytest.raises(BadCheckpoint, match=r"tensor\.pth"):
        load_rmvpe(path)


def test_rmvpe_loads_fp16_state_dict(tmp_path: Path) -> None:
    arrays = fill_of("rmvpe")
    state = collections.OrderedDict(
        (k, torch.from_numpy(v).half() if v.dtype == np.float32 else torch.from_numpy(v))
        for k, v in arrays.items()
    )
    write(tmp_path / "rmvpe" / "rmvpe.pt", state)
    model = load_rmvpe(models_dir=tmp_path)
    assert not model.training
    loaded = model.state_dict()
    for key in ("unet.encoder.bn.running_var", "fc.0.gru.weight_hh_l0_reverse", "cnn.weight"):
        assert loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], state[key].float())
    del state["fc.1.bias"]
    write(tmp_path / "rmvpe" / "rmvpe.pt", state)
    with pytest.raises(BadCheckpoint, match=r"rmvpe\.pt.*fc\.1\.bias"):
        load_rmvpe(models_dir=tmp_path)
