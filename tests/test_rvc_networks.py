"""RVC synthesizers (v1/v2) and RMVPE against the golden data of the official networks."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from mirage.models.voice.rvc.build import build_network
from mirage.models.voice.rvc.rmvpe import Rmvpe, decode, mel_filterbank
from mirage.models.voice.rvc.synthesizer import DEFAULT_NOISE_SCALE, Synthesizer, SynthesizerConfig
from mirage.models.voice.rvc.weightnorm import WNConv1d
from tests.conftest import GOLDEN, load_fill

RVC_DIR = GOLDEN / "rvc"
SYNTHS = ("rvc_v1_40k", "rvc_v2_40k")
NETWORKS = (*SYNTHS, "rmvpe")


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RVC_DIR / f"{name}.manifest.json").read_text())
    return data


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(RVC_DIR / f"{name}.golden.npz") as npz:
        return {k: npz[k] for k in npz.files}


def cases(arrays: dict[str, np.ndarray]) -> list[str]:
    return sorted({k.split("/")[0] for k in arrays if k.count("/") == 2})


@functools.cache
def filled(name: str) -> torch.nn.Module:
    """The network built by name, filled with the golden weights (checksum verified)."""
    fill = load_fill()
    man = manifest(name)
    arrays = fill.fill_state(man["state_dict"], man["fill"]["seed"])
    check = man["fill"]["checksum"]
    values = list(arrays.values())
    assert sum(float(a.sum(dtype=np.float64)) for a in values) == pytest.approx(
        check["sum"], rel=1e-9
    )
    assert sum(float(np.abs(a).sum(dtype=np.float64)) for a in values) == pytest.approx(
        check["sum_abs"], rel=1e-9
    )
    first = arrays[check["first_key"]].ravel()[: len(check["first_key_first_values"])]
    np.testing.assert_allclose(first, check["first_key_first_values"], rtol=1e-6)
    net = build_network(name)
    fill.load_into(net, arrays)
    return net.eval()


def inputs(name: str, arrays: dict[str, np.ndarray], case: str) -> dict[str, torch.Tensor]:
    names = [e["name"] for e in manifest(name)["io"]["inputs"]]
    return {n: torch.from_numpy(arrays[f"{case}/in/{n}"]) for n in names}


def short_v2_inputs(frames: int) -> dict[str, torch.Tensor]:
    """The first ``frames`` frames of v2 case0 (keeps the slower checks fast)."""
    args = inputs("rvc_v2_40k", golden("rvc_v2_40k"), "case0")
    for key in ("phone", "pitch", "nsff0"):
        args[key] = args[key][:, :frames].contiguous()
    args["phone_lengths"] = torch.tensor([frames])
    return args


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=SYNTHS)
def synth(request: pytest.FixtureRequest) -> tuple[str, Synthesizer]:
    net = filled(request.param)
    assert isinstance(net, Synthesizer)
    return request.param, net


@pytest.fixture
def rmvpe() -> torch.nn.Module:
    return filled("rmvpe")


@pytest.mark.parametrize("name", NETWORKS)
def test_state_dict_equals_manifest(name: str) -> None:
    net = build_network(name)
    mine = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()
    ]
    expected = [(e["key"], e["shape"], e["dtype"]) for e in manifest(name)["state_dict"]]
    assert mine == expected
    assert sum(v.numel() for v in net.parameters()) == manifest(name)["num_parameters"]
    assert not net.training
    assert all(p.device.type == "cpu" for p in net.parameters())


def test_unknown_network_name_is_refused() -> None:
    with pytest.raises(KeyError, match="rvc_v2_40k"):
        build_network("rvc_v3_40k")


def test_synthesizer_noise_is_zeroed_by_build_network() -> None:
    net = build_network("rvc_v2_40k")
    assert isinstance(net, Synthesizer)
    assert net.noise_scale == 0 and net.nsf_noise_scale == 0


@torch.no_grad()
def test_synthesizer_matches_golden(synth: tuple[str, Synthesizer]) -> None:
    name, net = synth
    arrays = golden(name)
    outputs = [e["name"] for e in manifest(name)["io"]["outputs"]]
    for case in cases(arrays):
        out = net(**inputs(name, arrays, case))
        assert set(outputs) <= set(out)
        for key in outputs:
            np.testing.assert_allclose(
                out[key].numpy(), arrays[f"{case}/out/{key}"], rtol=1e-4, atol=1e-4, err_msg=key
            )


@torch.no_grad()
def test_nsf_source_matches_golden(synth: tuple[str, Synthesizer]) -> None:
    name, net = synth
    arrays = golden(name)
    f0 = torch.from_numpy(arrays["case0/in/nsff0"])
    source = net.dec.m_source
    sine = source.l_sin_gen(f0, net.hop)
    np.testing.assert_allclose(sine.numpy(), arrays["case0/mid/sine_waves"], atol=1e-5)
    np.testing.assert_allclose(
        source(f0, net.hop).numpy(), arrays["case0/mid/har_source"], atol=1e-5
    )
    # Unvoiced frames give a silent excitation once the noise is off.
    unvoiced = np.repeat(f0[0].numpy() == 0, net.hop)
    assert unvoiced.any() and not unvoiced.all()
    assert np.all(sine[0, :, 0].numpy()[unvoiced] == 0)


@torch.no_grad()
def test_upstream_noise_changes_the_output() -> None:
    """The two noise switches are what the golden run zeroed: with them on, audio moves."""
    net = filled("rvc_v2_40k")
    assert isinstance(net, Synthesizer)
    args = short_v2_inputs(24)
    quiet = net(**args)["audio"].numpy()
    assert np.array_equal(quiet, net(**args)["audio"].numpy())  # deterministic when zeroed
    try:
        net.noise_scale, net.nsf_noise_scale = DEFAULT_NOISE_SCALE, 1.0
        noisy = net(**args)["audio"].numpy()
        net.noise_scale = 0.0  # the excitation noise alone also moves the audio
        nsf_only = net(**args)["audio"].numpy()
    finally:
        net.noise_scale, net.nsf_noise_scale = 0.0, 0.0
    assert np.abs(noisy - quiet).max() > 1e-2
    assert np.abs(nsf_only - quiet).max() > 1e-3


@torch.no_grad()
def test_skip_head_decodes_a_window_with_the_same_latents() -> None:
    """The realtime path (skip_head, return_length) decodes only the asked frames."""
    net = filled("rvc_v2_40k")
    assert isinstance(net, Synthesizer)
    args = short_v2_inputs(48)
    full = net(**args)
    head, length = 30, 10
    audio, x_mask, (z, *_rest) = net.infer(**args, skip_head=head, return_length=length)
    assert audio.shape == (1, 1, length * net.hop)
    assert x_mask.shape == (1, 1, length)
    # The flow sees 24 frames of left context: the latents match the full run's.
    np.testing.assert_allclose(
        z.numpy(), full["z"][:, :, head : head + length].numpy(), rtol=1e-4, atol=1e-4
    )
    same, *_ = net.infer(**args, skip_head=0, return_length=48)
    np.testing.assert_allclose(same.numpy(), full["audio"].numpy(), atol=1e-6)


def test_mel_filterbank_matches_golden() -> None:
    np.testing.assert_allclose(mel_filterbank(), golden("rmvpe")["mel_basis"], atol=1e-7)


@torch.no_grad()
def test_rmvpe_matches_golden(rmvpe: torch.nn.Module) -> None:
    arrays = golden("rmvpe")
    outputs = [e["name"] for e in manifest("rmvpe")["io"]["outputs"]]
    for case in cases(arrays):
        out = rmvpe(**inputs("rmvpe", arrays, case))
        assert set(outputs) <= set(out)
        for key in ("mel", "mel_padded"):
            np.testing.assert_allclose(
                out[key].numpy(), arrays[f"{case}/mid/{key}"], rtol=1e-4, atol=1e-4
            )
        for key in ("hidden_padded", "hidden"):
            np.testing.assert_allclose(
                out[key].numpy(), arrays[f"{case}/out/{key}"], rtol=1e-3, atol=1e-3
            )
        # decode is argmax-based: compare it on the golden salience (see golden README).
        np.testing.assert_allclose(
            decode(arrays[f"{case}/out/hidden"][0]), arrays[f"{case}/out/f0"], rtol=1e-4
        )
        assert out["f0"].shape == arrays[f"{case}/out/f0"].shape


def test_decode_threshold_and_local_average() -> None:
    salience = np.zeros((3, 360), dtype=np.float32)
    salience[0, 100] = 0.9  # a lone peak: exactly that bin's cents
    salience[1, 200:202] = 0.5  # two equal bins: halfway between them
    salience[1, 210] = 0.4  # outside the ±4-bin window: ignored
    salience[2, :] = 0.02  # weak everywhere: unvoiced
    f0 = decode(salience, threshold=0.03)
    cents = 20 * np.array([100.0, 200.5]) + 1997.3794084376191
    np.testing.assert_allclose(f0[:2], 10 * 2 ** (cents / 1200), rtol=1e-9)
    assert f0[2] == 0.0
    assert f0.dtype == np.float64
    assert decode(salience, threshold=0.95)[0] == 0.0


def test_synthesizer_properties() -> None:
    net = build_network("rvc_v1_40k")
    assert isinstance(net, Synthesizer)
    assert net.version == "v1" and net.sample_rate == 40000 and net.hop == 400
    assert net.enc_p.emb_phone.in_features == 256


def test_listing_backends_loads_no_model_package() -> None:
    """The registry asks every backend whether it can run to list them: that must load
    neither torch nor mediapipe (the embedded server never needs torch)."""
    code = (
        "import sys, mirage.models.registry as r\n"
        "reasons = {b.name: r.unavailable_reason(b, '/nonexistent') for b in r.BACKENDS}\n"
        "assert reasons['rvc'] and reasons['liveportrait'], reasons\n"
        "loaded = {'torch', 'mediapipe'} & set(sys.modules)\n"
        "assert not loaded, f'{loaded} imported to list backends'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_weight_norm_cache_follows_the_parameters() -> None:
    conv = WNConv1d(4, 6, 3, padding=1)
    assert conv.bias is not None
    torch.nn.init.zeros_(conv.bias)
    x = torch.randn(1, 4, 9)
    with torch.no_grad():
        first = conv(x)
        conv.weight_g.mul_(2)  # in place: the cache must notice
        np.testing.assert_allclose(conv(x).numpy(), 2 * first.numpy(), rtol=1e-5, atol=1e-6)
        conv.load_state_dict({k: v * 3 for k, v in conv.state_dict().items()})
        np.testing.assert_allclose(conv(x).numpy(), 6 * first.numpy(), rtol=1e-5, atol=1e-5)
        assert conv.double()(x.double()).dtype == torch.float64
    # With autograd on, the weight is rebuilt so gradients reach g and v.
    conv.float()(x).sum().backward()
    assert conv.weight_g.grad is not None and conv.weight_v.grad is not None


@pytest.mark.parametrize(
    ("version", "rates", "kernels", "sr"),
    [
        ("v1", [10, 4, 2, 2, 2], [16, 16, 4, 4, 4], 32000),
        ("v1", [10, 6, 2, 2, 2], [16, 16, 4, 4, 4], 48000),
        ("v2", [10, 8, 2, 2], [20, 16, 4, 4], 32000),
        ("v2", [12, 10, 2, 2], [24, 20, 4, 4], 48000),
    ],
)
@torch.no_grad()
def test_other_sample_rate_configs_render_one_hop_per_frame(
    version: str, rates: list[int], kernels: list[int], sr: int
) -> None:
    """The official 32k/48k configs: every stage lines up, audio = frames × prod(rates)."""
    config = list(manifest("rvc_v2_40k")["constructor"]["positional_config"])
    config[12], config[14], config[17] = rates, kernels, sr
    net = Synthesizer(SynthesizerConfig.from_list(config), version, 0.0, 0.0).eval()
    frames = 6
    out = net(
        phone=torch.randn(1, frames, 256 if version == "v1" else 768),
        phone_lengths=torch.tensor([frames]),
        pitch=torch.full((1, frames), 60),
        nsff0=torch.full((1, frames), 180.0),
        sid=torch.tensor([3]),
    )
    assert net.hop == int(np.prod(rates)) == sr // 100
    assert out["audio"].shape == (1, 1, frames * net.hop)
    assert bool(torch.isfinite(out["audio"]).all())


@torch.no_grad()
def test_rmvpe_front_end_stays_float32_in_a_half_model() -> None:
    audio = torch.from_numpy(golden("rmvpe")["case0/in/audio"])
    net = Rmvpe().to(torch.bfloat16)
    mel = net.mel(audio)
    assert mel.dtype == torch.float32
    np.testing.assert_allclose(mel.numpy(), golden("rmvpe")["case0/mid/mel"], atol=1e-4)
