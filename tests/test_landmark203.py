"""The official 203-point landmark model: runner, 203-point crop rule and ratios, animator use.

The model is a stand-in ONNX graph with the official input (``input``, 1×3×224×224) and
three outputs, the third holding the points; it returns points we plant, so every mapped
coordinate and ratio is known exactly. The real ``landmark.onnx`` is tested when present.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mirage.models.avatar.liveportrait import animator as lp  # noqa: E402
from mirage.models.avatar.liveportrait import crop as C  # noqa: E402
from mirage.models.base import BackendUnavailable, BadInput, WeightsMissing  # noqa: E402
from mirage.models.checkpoint import BadCheckpoint  # noqa: E402
from mirage.models.face import landmark203 as L  # noqa: E402
from mirage.models.face.mesh import FaceMesh  # noqa: E402
from tests.conftest import MEDIA  # noqa: E402
from tests.test_liveportrait_pipeline import StandIn, read_rgb, video_frames  # noqa: E402

# Known openness in the planted face: left eye 9/30, right eye 6/30, lips 15/60.
EYE_A_RATIO, EYE_B_RATIO, LIP_RATIO = 0.3, 0.2, 0.25


def canonical_face() -> np.ndarray:
    """(203, 2) points of a face in the 224 crop, normalised to [0, 1].

    The points the official code reads sit where a face has them (eyes, lip corners and
    lip gap); every other point lies on an ellipse, the face outline that sizes the crop.
    """
    t = np.linspace(0, 2 * np.pi, 203, endpoint=False)
    pts = np.stack([112 + 62 * np.cos(t), 124 + 76 * np.sin(t)], axis=1)
    pts[[0, 12, 6, 18]] = [(70, 100), (100, 100), (85, 95.5), (85, 104.5)]  # left eye
    pts[[24, 36, 30, 42]] = [(124, 100), (154, 100), (139, 97), (139, 103)]  # right eye
    pts[[48, 66, 90, 102]] = [(82, 160), (142, 160), (112, 152.5), (112, 167.5)]  # lips
    return pts / L.INPUT_SIZE


def write_model(
    path: Path,
    points: np.ndarray | None = None,
    n_outputs: int = 3,
    points_shape: tuple[object, ...] = (1, 406),
    input_channels: int = 3,
) -> Path:
    """A landmark.onnx look-alike: ``input`` (1, 3, 224, 224), constant outputs."""
    values = canonical_face() if points is None else points
    flat = np.asarray(values, np.float32).reshape(1, -1)
    arrays = [np.full((1, 8), 0.5, np.float32), np.zeros((1, 2), np.float32), flat]
    arrays = arrays[:n_outputs]
    names = [f"out{i}" for i in range(len(arrays))]
    nodes = [
        helper.make_node("Constant", [], [n], value=numpy_helper.from_array(a, n + "_c"))
        for n, a in zip(names, arrays, strict=True)
    ]
    shapes = [list(a.shape) for a in arrays]
    if n_outputs > 2:
        shapes[2] = list(points_shape)
    graph = helper.make_graph(
        nodes,
        "landmark_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, input_channels, 224, 224])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in zip(names, shapes, strict=True)
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_sized_by_input(path: Path) -> Path:
    """Three outputs, the third with as many values as the input is high (unknown until run)."""
    pool = numpy_helper.from_array(np.zeros((1, 500), np.float32), "pool")
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "three"], ["height"]),
        helper.make_node("Slice", ["pool", "zero", "height", "one"], ["out2"]),
        helper.make_node("Identity", ["zero"], ["out0"]),
        helper.make_node("Identity", ["one"], ["out1"]),
    ]
    consts = [
        pool,
        *(
            numpy_helper.from_array(np.array([v], np.int64), n)
            for n, v in (("zero", 0), ("one", 1), ("two", 2), ("three", 3))
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "landmark_dynamic",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [
            helper.make_tensor_value_info("out0", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("out1", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("out2", TensorProto.FLOAT, [1, "n"]),
        ],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]])


# --- the runner --------------------------------------------------------------------------


def test_points_come_back_in_image_pixels(tmp_path: Path) -> None:
    runner = L.Landmark203(write_model(tmp_path / "landmark.onnx"), device="cpu")
    assert runner.providers[-1] == "CPUExecutionProvider"
    image = np.zeros((480, 640, 3), np.uint8)
    m = similarity(0.8, 20.0, -150.0, 40.0)  # image → 224 crop, with a roll
    points = runner.run(image, m)
    assert points.shape == (203, 2) and points.dtype == np.float32
    # independently: crop pixel q = s R p + t, so p = R^T (q - t) / s
    q = canonical_face() * 224
    a = math.radians(20.0)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    expected = (q - [-150.0, 40.0]) @ rot / 0.8
    np.testing.assert_allclose(points, expected, atol=1e-3)
    # mapping the result back through the crop gives the planted crop points
    again = C.Crop(np.zeros((1, 1, 3), np.uint8), m).points(points)
    np.testing.assert_allclose(again, q, atol=1e-3)


def test_input_is_the_rgb_crop_scaled_to_unit(tmp_path: Path) -> None:
    runner = L.Landmark203(write_model(tmp_path / "landmark.onnx"), device="cpu")
    rng = np.random.RandomState(3)
    image = rng.randint(0, 256, (300, 400, 3)).astype(np.uint8)
    shift = np.array([[1.0, 0.0, -30.0], [0.0, 1.0, -50.0], [0.0, 0.0, 1.0]])
    blob = runner.preprocess(image, shift)
    assert blob.shape == (1, 3, 224, 224) and blob.dtype == np.float32
    # channel order kept (RGB), values / 255, pixel (x, y) of the crop = (x + 30, y + 50)
    np.testing.assert_allclose(blob[0, :, 10, 20], image[60, 50] / 255.0, atol=1e-6)
    np.testing.assert_allclose(blob[0].transpose(1, 2, 0), image[50:274, 30:254] / 255.0, atol=1e-6)
    # outside the image the crop is black
    far = runner.preprocess(image, np.array([[1.0, 0, -350.0], [0, 1.0, 0], [0, 0, 1.0]]))
    assert far[0, :, :, 100:].max() == 0.0


def test_runner_error_paths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(WeightsMissing, match=r"liveportrait/landmark\.onnx"):
        L.Landmark203(models_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="mirage.models.face.landmark203"):
        assert L.load_optional(tmp_path, "cpu") is None
    assert "landmark.onnx not found" in caplog.text
    with pytest.raises(WeightsMissing, match="landmark model missing"):
        L.load_optional(tmp_path, "cpu", required=True)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a model" * 20)
    with pytest.raises(BadCheckpoint, match=r"cannot load the landmark model .*corrupt\.onnx"):
        L.Landmark203(corrupt)
    with pytest.raises(BadCheckpoint, match="expected at least 3 outputs"):
        L.Landmark203(write_model(tmp_path / "two.onnx", n_outputs=2))
    with pytest.raises(BadCheckpoint, match="has 10 values, expected 406"):
        L.Landmark203(write_model(tmp_path / "ten.onnx", np.zeros(10), points_shape=(1, 10)))
    with pytest.raises(BadCheckpoint, match="1 channels, expected 3"):
        L.Landmark203(write_model(tmp_path / "grey.onnx", input_channels=1))
    # an output whose size is known only when it runs is checked then
    lying = L.Landmark203(write_sized_by_input(tmp_path / "dyn.onnx"))
    with pytest.raises(BadCheckpoint, match="gave 224 values, expected 406"):
        lying.run(np.zeros((64, 64, 3), np.uint8), np.eye(3))
    good = L.Landmark203(write_model(tmp_path / "good.onnx"))
    with pytest.raises(BadInput, match="RGB uint8"):
        good.run(np.zeros((64, 64), np.uint8), np.eye(3))
    with pytest.raises(BadInput, match="3x3"):
        good.run(np.zeros((64, 64, 3), np.uint8), np.eye(2))
    with pytest.raises(BadInput, match="unknown device"):
        L.Landmark203(tmp_path / "good.onnx", device="tpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            L.Landmark203(tmp_path / "good.onnx", device="cuda")


# --- the 203-point layout: crop rule and ratios --------------------------------------------


def test_ratios_use_the_official_indices() -> None:
    pts = canonical_face() * 224
    assert C.layout_of(pts) is C.LP203
    a, b = C.eye_ratios(pts)
    assert a == pytest.approx(EYE_A_RATIO, rel=1e-6) and b == pytest.approx(EYE_B_RATIO, rel=1e-6)
    assert C.lip_ratio(pts) == pytest.approx(LIP_RATIO, rel=1e-6)
    moved = pts.copy()
    moved[90, 1] -= 15  # open the mouth by the inner-lip point the official ratio reads
    assert C.lip_ratio(moved) == pytest.approx(0.5, rel=1e-6)
    moved[3] += 40  # a point no ratio reads changes nothing
    assert C.eye_ratios(moved) == (a, b)
    with pytest.raises(ValueError, match="no landmark layout for 100 points"):
        C.eye_ratios(pts[:100])


def test_crop_rule_on_203_points() -> None:
    pts = canonical_face() * 224
    rect = C.face_rect(pts, C.SOURCE_CROP)
    # upright face: no roll; the side is scale × the extent of all 203 points
    assert rect.angle == pytest.approx(0.0, abs=1e-9)
    extent = (pts.max(0) - pts.min(0)).max()
    assert rect.size == pytest.approx(2.3 * extent)
    mid = (pts.max(0) + pts.min(0)) / 2
    assert rect.center == pytest.approx((mid[0], mid[1] - 0.125 * rect.size))
    # roll the face 20° about a point: the square turns with it, same size
    turn = similarity(1.0, -20.0, 0.0, 0.0)
    rolled = pts @ turn[:2, :2].T
    r2 = C.face_rect(rolled, C.SOURCE_CROP)
    assert math.degrees(r2.angle) == pytest.approx(20.0, abs=1e-6)
    assert r2.size == pytest.approx(rect.size, rel=1e-6)
    np.testing.assert_allclose(r2.center, turn[:2, :2] @ np.array(rect.center), atol=1e-6)


# --- the animator: the model is picked up from the weights folder ---------------------------


class Spy:
    """Wraps the runner; keeps what it returned."""

    def __init__(self, runner: L.Landmark203) -> None:
        self.runner = runner
        self.returned: list[np.ndarray] = []

    def run(self, rgb: np.ndarray, to_crop: np.ndarray) -> np.ndarray:
        out = self.runner.run(rgb, to_crop)
        self.returned.append(out)
        return out


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return read_rgb(MEDIA / "s0.jpg")


def test_animator_uses_the_model_when_the_file_is_there(
    tmp_path: Path, portrait: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    write_model(tmp_path / L.LANDMARK_FILE)
    animator = lp.LivePortraitAnimator(
        models_dir=str(tmp_path), networks=StandIn(), device="cpu", detector="mesh", profile=True
    )
    assert isinstance(animator.landmarks, L.Landmark203)
    assert animator.landmarks.path == tmp_path / L.LANDMARK_FILE
    spy = Spy(animator.landmarks)
    animator.landmarks = spy  # type: ignore[assignment]
    animator.set_reference(portrait)
    ref = animator._reference
    assert ref is not None and len(spy.returned) == 1
    # the source's ratios are the planted face's, by the official indices
    assert ref.source.eye_ratios == pytest.approx((EYE_A_RATIO, EYE_B_RATIO), rel=1e-5)
    assert ref.source.lip_ratio == pytest.approx(LIP_RATIO, rel=1e-5)
    assert ref.source.lip_delta is not None  # lips apart (≥ 0.03): normalised
    # ...and the crop square is the 203 points', lying on the real face MediaPipe found
    assert ref.face == C.face_rect(spy.returned[0], C.SOURCE_CROP)
    with FaceMesh(static=True) as mesh:
        face = mesh.detect(portrait)
    assert face is not None
    mp_rect = C.face_rect(face.points, C.SOURCE_CROP)
    gap = np.hypot(ref.face.center[0] - mp_rect.center[0], ref.face.center[1] - mp_rect.center[1])
    assert gap < 0.2 * mp_rect.size and 0.6 < ref.face.size / mp_rect.size < 1.6
    # a driver frame: landmarks refined, driving crop and ratios from the 203 points
    frame = video_frames(MEDIA / "d0.mp4", 1)[0]
    out = animator.animate(frame, 256)
    assert out.shape == (256, 256, 3)
    assert len(spy.returned) == 2 and "landmarks" in animator.timings
    assert animator._rect == C.face_rect(spy.returned[1], C.DRIVER_CROP)
    animator.close()

    # no file: MediaPipe's points, with a note in the log; lp203 insists on the file
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level(logging.INFO, logger="mirage.models.face.landmark203"):
        plain = lp.LivePortraitAnimator(
            models_dir=str(empty), networks=StandIn(), device="cpu", detector="mesh"
        )
    assert plain.landmarks is None and "cropping on MediaPipe landmarks" in caplog.text
    plain.close()
    with pytest.raises(WeightsMissing, match="landmark model missing"):
        lp.LivePortraitAnimator(
            models_dir=str(empty), networks=StandIn(), device="cpu", landmarks="lp203"
        )
    off = lp.LivePortraitAnimator(
        models_dir=str(tmp_path), networks=StandIn(), device="cpu", landmarks="mediapipe"
    )
    assert off.landmarks is None
    off.close()
    with pytest.raises(BadInput, match="unknown landmarks"):
        lp.LivePortraitAnimator(networks=StandIn(), device="cpu", landmarks="dlib")


def test_a_corrupt_landmark_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / L.LANDMARK_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(BadCheckpoint, match=r"landmark\.onnx"):
        lp.LivePortraitAnimator(models_dir=str(tmp_path), networks=StandIn(), device="cpu")


@pytest.mark.skipif(L.find_weights() is None, reason="liveportrait/landmark.onnx not present")
def test_real_model_lands_on_the_portrait_face(portrait: np.ndarray) -> None:
    with FaceMesh(static=True) as mesh:
        face = mesh.detect(portrait)
    assert face is not None
    rect = C.face_rect(face.points, C.LANDMARK_CROP)
    points = L.Landmark203(device="cpu").run(
        portrait, C.crop_matrix(rect, C.LANDMARK_CROP.dsize, rotate=True)
    )
    x0, y0, x1, y1 = face.box
    inside = (points[:, 0] > x0 - 20) & (points[:, 0] < x1 + 20)
    inside &= (points[:, 1] > y0 - 40) & (points[:, 1] < y1 + 20)
    assert inside.mean() > 0.95
    a, b = C.eye_ratios(points)
    assert 0.1 < a < 0.6 and 0.1 < b < 0.6  # open eyes
    assert C.lip_ratio(points) < 0.1  # closed mouth
