"""LivePortrait networks against the golden reference data (shared/golden/liveportrait).

Each network is built by name, filled with the golden fill rule, and must reproduce the
outputs the official code computed from the same weights and inputs; the chain case runs a
real source + driving portrait through the keypoint algebra and all five networks.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mirage.models.avatar.liveportrait import keypoints as kpt  # noqa: E402
from mirage.models.avatar.liveportrait.appearance import AppearanceFeatureExtractor  # noqa: E402
from mirage.models.avatar.liveportrait.motion import MotionExtractor  # noqa: E402
from mirage.models.avatar.liveportrait.networks import NETWORK_NAMES, build_network  # noqa: E402
from mirage.models.avatar.liveportrait.spade import SPADEDecoder  # noqa: E402
from mirage.models.avatar.liveportrait.warping import WarpingNetwork  # noqa: E402
from tests.conftest import GOLDEN, load_fill  # noqa: E402

LP_GOLDEN = GOLDEN / "liveportrait"
SINGLE_TOL: dict[str, Any] = {"rtol": 1e-4, "atol": 1e-4}
CHAIN_TOL: dict[str, Any] = {"rtol": 1e-3, "atol": 1e-3}


def manifest(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((LP_GOLDEN / f"{name}.manifest.json").read_text())
    return data


def golden(name: str) -> Any:
    return np.load(LP_GOLDEN / f"{name}.golden.npz")


def cases(npz: Any) -> list[str]:
    return sorted({key.split("/")[0] for key in npz.files if "/" in key})


@pytest.fixture(scope="session")
def fill(shared_dir: Path) -> ModuleType:
    return load_fill()


@pytest.fixture(scope="session")
def filled(fill: ModuleType) -> Callable[[str], Any]:
    """name → the network filled with the golden weights (built once per session)."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            man = manifest(name)
            net = build_network(name)
            fill.load_into(net, fill.fill_state(man["state_dict"], man["fill"]["seed"]))
            cache[name] = net.eval()
        return cache[name]

    return get


def stored_form(tensor: Any, stored: str) -> tuple[Any, dict[str, Any]]:
    """Our full output in the npz's stored form (NAME, NAME@s2 or NAME@sum_c), plus the
    tolerance override for that form."""
    base, _, form = stored.partition("@")
    if form == "s2":
        index = [slice(None)] * 2 + [slice(None, None, 2)] * (tensor.ndim - 2)
        if base == "deformation":  # its last axis is xyz, kept whole
            index[-1] = slice(None)
        return tensor[tuple(index)], {}
    if form == "sum_c":
        n_spatial = math.prod(tensor.shape[2:])
        return tensor.double().flatten(2).sum(-1), {"atol": 1e-3 * math.sqrt(n_spatial)}
    assert not form, f"unknown stored form {stored!r}"
    return tensor, {}


def assert_matches(got: dict[str, Any], npz: Any, prefix: str, tol: dict[str, Any]) -> set[str]:
    """Compare every npz array under ``prefix`` with ``got``; return the names compared."""
    compared = set()
    for key in npz.files:
        if not key.startswith(prefix):
            continue
        stored = key[len(prefix) :]
        base = stored.partition("@")[0]
        mine, override = stored_form(got[base], stored)
        ref = npz[key]
        assert tuple(mine.shape) == ref.shape, key
        np.testing.assert_allclose(
            mine.detach().numpy(), ref, **{**tol, **override}, err_msg=f"{key} differs"
        )
        compared.add(base)
    return compared


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_state_dict_matches_manifest(name: str, shared_dir: Path) -> None:
    man = manifest(name)
    net = build_network(name)
    ours = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()
    ]
    theirs = [(e["key"], e["shape"], e["dtype"]) for e in man["state_dict"]]
    assert ours == theirs
    if "num_parameters" in man:
        assert sum(p.numel() for p in net.parameters()) == man["num_parameters"]


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_fill_checksum(name: str, fill: ModuleType) -> None:
    """Our numpy reproduces the golden fill, so a mismatch below is the network's fault."""
    man = manifest(name)
    arrays = fill.fill_state(man["state_dict"], man["fill"]["seed"])
    check = man["fill"]["checksum"]
    total = sum(float(a.astype(np.float64).sum()) for a in arrays.values())
    total_abs = sum(float(np.abs(a.astype(np.float64)).sum()) for a in arrays.values())
    assert total == pytest.approx(check["sum"], rel=1e-9, abs=1e-9)
    assert total_abs == pytest.approx(check["sum_abs"], rel=1e-9)
    first = arrays[check["first_key"]].ravel()[: len(check["first_key_first_values"])]
    np.testing.assert_array_equal(first, np.float32(check["first_key_first_values"]))


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_golden_outputs(name: str, filled: Callable[[str], Any]) -> None:
    man, npz, net = manifest(name), golden(name), filled(name)
    assert cases(npz), "no golden cases"
    for case in cases(npz):
        inputs = {
            e["name"]: torch.from_numpy(npz[f"{case}/in/{e['name']}"]) for e in man["io"]["inputs"]
        }
        with torch.no_grad():
            out = net(**inputs)
        compared = assert_matches(out, npz, f"{case}/out/", SINGLE_TOL)
        assert compared == {o["name"] for o in man["io"]["outputs"]}


def test_retarget_helpers_match_golden(filled: Callable[[str], Any]) -> None:
    """The pipeline's helpers (stitch, retarget) give the module's golden outputs."""
    net, npz = filled("stitching_retargeting_module"), golden("stitching_retargeting_module")
    for case in cases(npz):
        arr = {
            k.rsplit("/", 1)[1]: torch.from_numpy(npz[k]) for k in npz.files if k.startswith(case)
        }
        with torch.no_grad():
            got = {
                "kp_driving_stitched": kpt.stitch(
                    net.stitching, arr["kp_source"], arr["kp_driving"]
                ),
                "lip_delta": kpt.retarget(net.lip, arr["kp_source"], arr["lip_close_ratio"]),
                "eye_delta": kpt.retarget(net.eye, arr["kp_source"], arr["eye_close_ratio"]),
            }
        for key, value in got.items():
            np.testing.assert_allclose(value.numpy(), arr[key].numpy(), **SINGLE_TOL)


@pytest.mark.slow
def test_chain_source_and_driver_to_image(filled: Callable[[str], Any], shared_dir: Path) -> None:
    """s0.jpg animated by d8.jpg: every intermediate of the official chain, then the image."""
    npz = golden("chain")
    assert manifest("chain")["fill"]["seed"] == manifest("warping_module")["fill"]["seed"]
    motion, appearance = filled("motion_extractor"), filled("appearance_feature_extractor")
    warping, generator = filled("warping_module"), filled("spade_generator")
    stitching = filled("stitching_retargeting_module")
    for case in cases(npz):
        source = torch.from_numpy(npz[f"{case}/in/source_image"])
        driving = torch.from_numpy(npz[f"{case}/in/driving_image"])
        with torch.no_grad():
            s_info = kpt.KeypointInfo.from_motion(motion(image=source))
            d_info = kpt.KeypointInfo.from_motion(motion(image=driving))
            f_s = appearance(source_image=source)["feature_3d"]
            x_s, x_d = kpt.transform_keypoints(s_info), kpt.transform_keypoints(d_info)
            x_d_stitched = kpt.stitch(stitching.stitching, x_s, x_d)
            warped = warping(f_s, kp_driving=x_d_stitched, kp_source=x_s)
            image = generator(feature=warped["out"])["image"]
        mid: dict[str, Any] = {
            "R_s": s_info.rotation,
            "R_d": d_info.rotation,
            "f_s": f_s,
            "x_s": x_s,
            "x_d": x_d,
            "x_d_stitched": x_d_stitched,
            "occlusion_map": warped["occlusion_map"],
            "deformation": warped["deformation"],
        }
        for prefix, info in (("x_s_info", s_info), ("x_d_info", d_info)):
            for field in ("pitch", "yaw", "roll", "t", "exp", "scale", "kp"):
                mid[f"{prefix}.{field}"] = getattr(info, field)
        compared = assert_matches(mid, npz, f"{case}/mid/", CHAIN_TOL)
        assert compared == set(mid)
        assert assert_matches({"image": image}, npz, f"{case}/out/", CHAIN_TOL) == {"image"}


def test_every_golden_network_can_be_built(shared_dir: Path) -> None:
    names = {json.loads(p.read_text())["network"] for p in LP_GOLDEN.glob("*.manifest.json")}
    assert names - {"chain"} == set(NETWORK_NAMES)


def test_warping_without_occlusion_map() -> None:
    torch.manual_seed(0)
    small = {"block_expansion": 4, "max_features": 8, "num_blocks": 1, "reshape_depth": 4}
    net = WarpingNetwork(
        block_expansion=4,
        max_features=8,
        reshape_channel=2,
        estimate_occlusion_map=False,
        dense_motion_params={**small, "compress": 1},
    ).eval()
    kp = torch.rand(1, 21, 3) * 0.2
    with torch.no_grad():
        out = net(torch.randn(1, 2, 4, 8, 8), kp_driving=kp, kp_source=kp)
    assert set(out) == {"deformation", "out"}
    assert out["out"].shape == (1, 16, 8, 8)


def test_build_network_is_eval_on_cpu() -> None:
    net = build_network("stitching_retargeting_module")
    assert not net.training
    assert all(p.device.type == "cpu" for p in net.parameters())


def test_build_network_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="known: appearance_feature_extractor"):
        build_network("motion_extracter")


def test_constructors_reject_inconsistent_configs() -> None:
    with pytest.raises(ValueError, match="reshape_channel"):
        AppearanceFeatureExtractor(max_features=512, reshape_channel=32, reshape_depth=8)
    with pytest.raises(ValueError, match="backbone"):
        MotionExtractor(backbone="resnet50")


# --- the keypoint algebra ------------------------------------------------------------------


def chain_info(prefix: str) -> kpt.KeypointInfo:
    npz = golden("chain")
    get = {f: torch.from_numpy(npz[f"chain0/mid/{prefix}.{f}"]) for f in ("pitch", "yaw", "roll")}
    rest = {
        f: torch.from_numpy(npz[f"chain0/mid/{prefix}.{f}"]) for f in ("t", "exp", "scale", "kp")
    }
    return kpt.KeypointInfo(
        **get, **rest, rotation=kpt.rotation_matrix(get["pitch"], get["yaw"], get["roll"])
    )


def test_headpose_degrees_is_the_bin_expectation() -> None:
    peaked = torch.full((2, 66), -1e4)
    peaked[0, 40] = 0.0
    peaked[1, 0] = 0.0
    assert kpt.headpose_to_degrees(peaked).squeeze(1).tolist() == pytest.approx([22.5, -97.5])
    uniform = torch.zeros(1, 66)  # expectation of bins 0..65 is 32.5 → 0 degrees
    assert kpt.headpose_to_degrees(uniform).item() == pytest.approx(0.0, abs=1e-4)


def test_rotation_matrix_convention() -> None:
    zero = torch.zeros(1, 1)
    r = kpt.rotation_matrix(zero, torch.full((1, 1), 90.0), zero)[0]
    # yaw only: R = Ry(90)ᵀ, so the row vector x̂ goes to -ẑ.
    np.testing.assert_allclose((torch.tensor([1.0, 0.0, 0.0]) @ r).numpy(), [0, 0, -1], atol=1e-6)
    angles = (
        torch.tensor([[10.0], [-35.0]]),
        torch.tensor([[20.0], [5.0]]),
        torch.tensor([[-7.0], [60.0]]),
    )
    rot = kpt.rotation_matrix(*angles)
    eye = torch.eye(3).expand(2, 3, 3)
    np.testing.assert_allclose((rot @ rot.transpose(1, 2)).numpy(), eye.numpy(), atol=1e-6)
    np.testing.assert_allclose(torch.linalg.det(rot).numpy(), [1.0, 1.0], atol=1e-6)


def test_relative_motion_without_driver_motion_keeps_the_source(shared_dir: Path) -> None:
    source, first = chain_info("x_s_info"), chain_info("x_d_info")
    x_s = kpt.transform_keypoints(source)
    np.testing.assert_allclose(
        kpt.relative_keypoints(source, first, first).numpy(), x_s.numpy(), atol=1e-5
    )


def test_relative_motion_applies_the_drivers_change(shared_dir: Path) -> None:
    source, first = chain_info("x_s_info"), chain_info("x_d_info")
    x_s = kpt.transform_keypoints(source)
    shift = torch.tensor([[0.1, -0.2, 0.7]])  # t_z is never used
    moved = kpt.KeypointInfo(**{**vars(first), "t": first.t + shift})
    expected = x_s + torch.tensor([0.1, -0.2, 0.0])
    np.testing.assert_allclose(
        kpt.relative_keypoints(source, moved, first).numpy(), expected.numpy(), atol=1e-5
    )
    bigger = kpt.KeypointInfo(**{**vars(first), "scale": first.scale * 2})
    t_xy = torch.cat([source.t[:, :2], torch.zeros(1, 1)], dim=1)[:, None, :]
    np.testing.assert_allclose(
        kpt.relative_keypoints(source, bigger, first).numpy(),
        ((x_s - t_xy) * 2 + t_xy).numpy(),
        atol=1e-4,
    )


def test_scale_motion() -> None:
    x_s, x_d = torch.zeros(1, 21, 3), torch.ones(1, 21, 3)
    assert torch.equal(kpt.scale_motion(x_s, x_d, 1.0), x_d)
    assert torch.equal(kpt.scale_motion(x_s, x_d, 0.0), x_s)
    assert torch.allclose(kpt.scale_motion(x_s, x_d, 1.5), x_d * 1.5)


# --- inference forms: channels_last, autocast, folded spectral norm --------------------------


def small_networks(fill: ModuleType, motion: Any) -> tuple[Any, Any, Any, Any]:
    """Scaled-down F, W, G filled by the golden rule (converged spectral norms and sane
    batch-norm statistics, like trained weights), plus a copy of the filled full-size M."""
    appearance = AppearanceFeatureExtractor(
        block_expansion=8, max_features=32, reshape_channel=4, reshape_depth=8, num_resblocks=1
    )
    warping = WarpingNetwork(
        block_expansion=8,
        max_features=32,
        reshape_channel=4,
        dense_motion_params={
            "block_expansion": 8,
            "max_features": 32,
            "num_blocks": 2,
            "reshape_depth": 8,
            "compress": 2,
        },
    )
    generator = SPADEDecoder(block_expansion=8, max_features=32, out_channels=8)
    seed = manifest("spade_generator")["fill"]["seed"]
    for net in (appearance, warping, generator):
        entries = [(k, list(v.shape), str(v.dtype)) for k, v in net.state_dict().items()]
        fill.load_into(net, fill.fill_state(entries, seed))
        net.eval()
    return appearance, copy.deepcopy(motion), warping, generator


def run_small(nets: tuple[Any, ...], image: Any, channels_last: bool) -> dict[str, Any]:
    appearance, motion, warping, generator = nets
    if channels_last:
        image = image.to(memory_format=torch.channels_last)
    info = kpt.KeypointInfo.from_motion(motion(image=image))
    f_s = appearance(source_image=image)["feature_3d"]
    if channels_last:
        f_s = f_s.to(memory_format=torch.channels_last_3d)
    x_s = kpt.transform_keypoints(info) * 0.1
    warped = warping(f_s, kp_driving=x_s + 0.05, kp_source=x_s)
    return {"f_s": f_s, "kp": x_s, **warped, **generator(feature=warped["out"])}


def test_channels_last_gives_the_same_result(
    fill: ModuleType, filled: Callable[[str], Any]
) -> None:
    nets = small_networks(fill, filled("motion_extractor"))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = run_small(nets, image, channels_last=False)
        for net in (nets[1], nets[3]):  # the 2D-only networks; 3D weights have no such format
            net.to(memory_format=torch.channels_last)
        fast = run_small(nets, image, channels_last=True)
    assert ref["image"].shape == (1, 3, 64, 64)
    for key, value in ref.items():
        np.testing.assert_allclose(fast[key].numpy(), value.numpy(), rtol=1e-4, atol=1e-4)


def autocast_case(
    fill: ModuleType, motion: Any, device: str, dtype: Any, size: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    nets = tuple(n.to(device) for n in small_networks(fill, motion))
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        ref = run_small(nets, image, channels_last=False)
        with torch.autocast(device, dtype=dtype):
            low = run_small(nets, image, channels_last=device == "cuda")
    return ref, low


@pytest.mark.slow  # bf16 3D convs are very slow on CPUs without native bf16
def test_autocast_bf16_on_cpu(fill: ModuleType, filled: Callable[[str], Any]) -> None:
    ref, low = autocast_case(fill, filled("motion_extractor"), "cpu", torch.bfloat16, 32)
    for key in ref:
        assert torch.isfinite(low[key]).all(), key
    assert (low["image"].float() - ref["image"]).abs().mean() < 0.02  # bf16 keeps ~3 digits


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_autocast_fp16_on_cuda(fill: ModuleType, filled: Callable[[str], Any]) -> None:
    ref, low = autocast_case(fill, filled("motion_extractor"), "cuda", torch.float16, 64)
    for key in ref:
        assert torch.isfinite(low[key]).all(), key
    assert (low["image"].float() - ref["image"]).abs().mean() < 0.01


def test_fold_spectral_norm_keeps_outputs() -> None:
    torch.manual_seed(0)
    generator = SPADEDecoder(block_expansion=8, max_features=32, out_channels=8).eval()
    feature = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        before = generator(feature=feature)["image"]
        generator.fold_spectral_norm()
        after = generator(feature=feature)["image"]
    assert not any(k.endswith("weight_orig") for k in generator.state_dict())
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-5, atol=1e-6)
