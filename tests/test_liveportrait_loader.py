"""The LivePortrait checkpoint loader, on files written in the official containers.

The "official" files here are made from the golden manifests' keys and the golden fill,
not from our modules, so a key our networks name differently would fail to load.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mirage.app import create_app  # noqa: E402
from mirage.models.avatar.liveportrait.loader import (  # noqa: E402
    CHECKPOINT_FILES,
    checkpoint_paths,
    load_network,
    load_networks,
    missing_weights,
    save_checkpoints,
)
from mirage.models.avatar.liveportrait.networks import NETWORK_NAMES  # noqa: E402
from mirage.models.base import WeightsMissing  # noqa: E402
from mirage.models.checkpoint import BadCheckpoint  # noqa: E402
from mirage.weights import DEFAULT_MODELS_DIR  # noqa: E402
from tests.conftest import GOLDEN, load_fill  # noqa: E402
from tests.server_fixtures import LOOPBACK  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def official_state(name: str) -> dict[str, Any]:
    """The golden fill of ``name`` as the official file holds it: key → tensor."""
    man = json.loads((GOLDEN / "liveportrait" / f"{name}.manifest.json").read_text())
    arrays = load_fill().fill_state(man["state_dict"], man["fill"]["seed"])
    # np.array keeps 0-d shapes (num_batches_tracked), as torch.save stores them.
    return OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in arrays.items())


def write_official(root: Path, name: str, *, ddp_prefix: bool = False) -> Path:
    """Save ``name`` in the official container format and place under ``root``."""
    path = root / CHECKPOINT_FILES[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    state = official_state(name)
    if name == "stitching_retargeting_module":
        parts: dict[str, Any] = {}
        for part in ("retarget_shoulder", "retarget_mouth", "retarget_eye"):
            prefix = "module." if ddp_prefix else ""
            parts[part] = OrderedDict(
                (prefix + k.removeprefix(part + "."), v)
                for k, v in state.items()
                if k.startswith(part + ".")
            )
        torch.save(parts, path)
    else:
        torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name in NETWORK_NAMES:
        write_official(root, name, ddp_prefix=True)
    return root


def assert_state_equal(module: Any, state: dict[str, Any]) -> None:
    ours = module.state_dict()
    assert list(ours) == list(state)
    for key, value in state.items():
        assert torch.equal(ours[key], value), key


def test_checkpoint_layout_is_the_official_one() -> None:
    for name in NETWORK_NAMES:
        man = json.loads((GOLDEN / "liveportrait" / f"{name}.manifest.json").read_text())
        assert man["checkpoint"]["file"] == f"pretrained_weights/{CHECKPOINT_FILES[name]}"


def test_load_networks_reads_official_files(official_dir: Path) -> None:
    nets = load_networks(official_dir)
    names = []
    for name, module in nets.items():
        names.append(name)
        assert not module.training
        assert_state_equal(module, official_state(name))
    assert names == list(NETWORK_NAMES)


def test_save_checkpoints_round_trips(official_dir: Path, tmp_path: Path) -> None:
    nets = load_networks(official_dir)
    written = save_checkpoints(nets, tmp_path)
    assert sorted(written) == sorted(checkpoint_paths(tmp_path).values())
    stitching = torch.load(written[-1], weights_only=True)
    assert set(stitching) == {"retarget_shoulder", "retarget_mouth", "retarget_eye"}
    assert "mlp.0.weight" in stitching["retarget_eye"]
    for name in ("appearance_feature_extractor", "stitching_retargeting_module"):
        assert_state_equal(load_network(name, tmp_path), official_state(name))


def test_missing_weights_lists_every_absent_file(tmp_path: Path) -> None:
    assert missing_weights(tmp_path) == [tmp_path / rel for rel in CHECKPOINT_FILES.values()]
    write_official(tmp_path, "stitching_retargeting_module")
    assert tmp_path / CHECKPOINT_FILES["stitching_retargeting_module"] not in missing_weights(
        tmp_path
    )
    assert len(missing_weights(tmp_path)) == len(NETWORK_NAMES) - 1


def test_default_weights_folder() -> None:
    paths = checkpoint_paths(None)
    assert paths["warping_module"] == (
        DEFAULT_MODELS_DIR / "liveportrait" / "base_models" / "warping_module.pth"
    )


def test_missing_file_raises_weights_missing_naming_it(tmp_path: Path) -> None:
    write_official(tmp_path, "stitching_retargeting_module")
    with pytest.raises(WeightsMissing) as err:
        load_networks(tmp_path)
    assert not isinstance(err.value, BadCheckpoint)
    for rel in CHECKPOINT_FILES.values():
        present = rel.endswith("stitching_retargeting_module.pth")
        assert (str(tmp_path / rel) in str(err.value)) is not present
    with pytest.raises(WeightsMissing, match=r"appearance_feature_extractor\.pth"):
        load_network("appearance_feature_extractor", tmp_path)


def test_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILES["appearance_feature_extractor"]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(BadCheckpoint, match=str(path)):
        load_network("appearance_feature_extractor", tmp_path)


async def test_a_damaged_file_is_a_server_fault(aiohttp_client: Any, tmp_path: Path) -> None:
    """503, as for RVC's files and an absent file: the client cannot repair the server's
    weights folder (tests/test_rvc_converter.py asserts the same)."""
    for rel in CHECKPOINT_FILES.values():  # all present, none usable
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"PK\x03\x04 this is not a checkpoint")
    client = await aiohttp_client(create_app(LOOPBACK.replace(models_dir=str(tmp_path))))
    sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    options = {"face": "liveportrait", "face_options": {"device": "cpu", "landmarks": "mediapipe"}}
    body = {"sdp": sdp, "type": "offer", "options": options}
    resp = await client.post("/offer", data=json.dumps(body))
    answer = await resp.json()
    assert resp.status == 503, answer
    first = tmp_path / CHECKPOINT_FILES["appearance_feature_extractor"]
    assert f"cannot read LivePortrait weight file {first}" in answer["error"]


def test_wrong_keys_name_the_file_and_keys(tmp_path: Path) -> None:
    path = write_official(tmp_path, "appearance_feature_extractor")
    state = torch.load(path, weights_only=True)
    state["first.conv.weights"] = state.pop("first.conv.weight")
    torch.save(state, path)
    with pytest.raises(BadCheckpoint, match=r"first\.conv\.weight") as err:
        load_network("appearance_feature_extractor", tmp_path)
    assert str(path) in str(err.value)
    assert "first.conv.weights" in str(err.value)


def test_wrong_shape_names_the_key(tmp_path: Path) -> None:
    path = write_official(tmp_path, "appearance_feature_extractor")
    state = torch.load(path, weights_only=True)
    state["second.weight"] = state["second.weight"][:256]
    torch.save(state, path)
    with pytest.raises(BadCheckpoint, match=r"second\.weight has shape \(256, 256, 1, 1\)"):
        load_network("appearance_feature_extractor", tmp_path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILES["appearance_feature_extractor"]
    path.parent.mkdir(parents=True)
    torch.save([torch.zeros(3)], path)
    with pytest.raises(BadCheckpoint, match="not a state_dict"):
        load_network("appearance_feature_extractor", tmp_path)


def test_stitching_container_needs_all_three_parts(tmp_path: Path) -> None:
    path = write_official(tmp_path, "stitching_retargeting_module")
    parts = torch.load(path, weights_only=True)
    del parts["retarget_eye"]
    torch.save(parts, path)
    with pytest.raises(BadCheckpoint, match="retarget_eye"):
        load_network("stitching_retargeting_module", tmp_path)


def test_stitching_part_with_wrong_keys_names_the_part(tmp_path: Path) -> None:
    path = write_official(tmp_path, "stitching_retargeting_module")
    parts = torch.load(path, weights_only=True)
    parts["retarget_mouth"] = parts["retarget_eye"]
    torch.save(parts, path)
    with pytest.raises(BadCheckpoint, match=r"\[retarget_mouth\]"):
        load_network("stitching_retargeting_module", tmp_path)


def test_package_import_does_not_load_torch() -> None:
    code = (
        "import sys, mirage.models, mirage.models.avatar.liveportrait.loader as lp\n"
        "assert 'torch' not in sys.modules, 'import'\n"
        "assert lp.missing_weights('/nonexistent')\n"
        "assert lp.unavailable_reason('/nonexistent').startswith('missing ')\n"
        "assert 'torch' not in sys.modules, 'missing_weights'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
