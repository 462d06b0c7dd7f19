"""SCRFD decoding, on a stand-in ONNX model with det_10g's names and shapes; the tracker.

The stand-in ignores its input and returns planted outputs, so every decoded box, score
and keypoint is known exactly; the real det_10g.onnx is tested only when present.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mirage.models.base import BackendUnavailable, BadInput, WeightsMissing  # noqa: E402
from mirage.models.checkpoint import BadCheckpoint  # noqa: E402
from mirage.models.face import scrfd  # noqa: E402
from mirage.models.face.mesh import FaceLandmarks, FaceMesh  # noqa: E402
from mirage.models.face.tracker import FaceTracker, TrackerConfig, make_detector  # noqa: E402
from tests.conftest import MEDIA  # noqa: E402

# det_10g's real tensor names: scores(8, 16, 32), boxes(8, 16, 32), keypoints(8, 16, 32).
OUTPUT_NAMES = ["448", "471", "494", "451", "474", "497", "454", "477", "500"]
SIZE = 640


def rows(stride: int) -> int:
    return (SIZE // stride) ** 2 * 2


def blank_outputs() -> list[np.ndarray]:
    widths = [1, 4, 10]
    return [np.zeros((rows(s), w), np.float32) for w in widths for s in scrfd.STRIDES]


def plant(
    outs: list[np.ndarray],
    stride: int,
    gx: int,
    gy: int,
    anchor: int,
    score: float,
    dist: tuple[float, float, float, float],
    kp_offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Write one anchor's outputs; return its box and keypoints in model-input pixels."""
    level = scrfd.STRIDES.index(stride)
    row = (gy * (SIZE // stride) + gx) * 2 + anchor
    outs[level][row, 0] = score
    outs[level + 3][row] = dist
    outs[level + 6][row] = kp_offsets.reshape(-1)
    cx, cy = gx * stride, gy * stride
    box = np.array(
        [
            cx - dist[0] * stride,
            cy - dist[1] * stride,
            cx + dist[2] * stride,
            cy + dist[3] * stride,
        ],
        np.float32,
    )
    kps = kp_offsets.reshape(5, 2) * stride + np.array([cx, cy], np.float32)
    return box, kps


def write_model(
    path: Path,
    outputs: list[np.ndarray],
    names: list[str] = OUTPUT_NAMES,
    input_shape: tuple[object, ...] = (1, 3, "h", "w"),
) -> Path:
    """A det_10g look-alike: input ``input.1`` (1, 3, ?, ?), outputs are constants."""
    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name + "_c"))
        for name, arr in zip(names, outputs, strict=True)
    ]
    graph = helper.make_graph(
        nodes,
        "scrfd_standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, list(input_shape))],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
            for n, a in zip(names, outputs, strict=True)
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def planted(tmp_path: Path) -> tuple[Path, list[tuple[np.ndarray, np.ndarray, float]]]:
    rng = np.random.RandomState(0)
    outs = blank_outputs()
    expected = []
    # face A at stride 16, second anchor; a weaker near-duplicate on the first anchor of the
    # same cell must be removed by NMS.
    box, kps = plant(outs, 16, 10, 8, 1, 0.97, (3.0, 4.0, 3.5, 5.0), rng.uniform(-2, 2, 10))
    expected.append((box, kps, 0.97))
    plant(outs, 16, 10, 8, 0, 0.80, (3.0, 4.25, 3.5, 5.0), rng.uniform(-2, 2, 10))
    # face B at stride 8, small; face C at stride 32, large and far from A.
    box, kps = plant(outs, 8, 60, 20, 0, 0.91, (2.0, 2.5, 2.0, 3.0), rng.uniform(-1, 1, 10))
    expected.append((box, kps, 0.91))
    box, kps = plant(outs, 32, 15, 5, 1, 0.66, (2.0, 2.0, 2.5, 3.0), rng.uniform(-1, 1, 10))
    expected.append((box, kps, 0.66))
    # below the 0.5 threshold: must not appear.
    plant(outs, 8, 5, 70, 1, 0.49, (2.0, 2.0, 2.0, 2.0), np.zeros(10))
    return write_model(tmp_path / "det_10g.onnx", outs), expected


def test_decodes_planted_faces_exactly(planted: tuple[Path, list]) -> None:
    path, expected = planted
    det = scrfd.Scrfd(path, config=scrfd.ScrfdConfig(device="cpu"))
    # a 1280x720 frame is letterboxed at scale 0.5, so image pixels = input pixels * 2.
    frame = np.full((720, 1280, 3), 90, np.uint8)
    faces = det.detect(frame)
    assert [round(f.score, 2) for f in faces] == [0.97, 0.91, 0.66]
    for face, (box, kps, score) in zip(faces, expected, strict=True):
        np.testing.assert_allclose(face.box, box * 2.0, rtol=1e-6)
        np.testing.assert_allclose(face.keypoints, kps * 2.0, rtol=1e-6)
        assert face.score == pytest.approx(score, abs=1e-6)
    largest = det.largest(frame)
    assert largest is not None
    np.testing.assert_allclose(largest.box, expected[2][0] * 2.0, rtol=1e-6)


def test_threshold_and_nms_settings_apply(planted: tuple[Path, list]) -> None:
    path, _ = planted
    strict = scrfd.Scrfd(path, config=scrfd.ScrfdConfig(device="cpu", score_threshold=0.95))
    assert len(strict.detect(np.zeros((640, 640, 3), np.uint8))) == 1
    loose = scrfd.Scrfd(
        path, config=scrfd.ScrfdConfig(device="cpu", score_threshold=0.4, nms_threshold=0.99)
    )
    assert len(loose.detect(np.zeros((640, 640, 3), np.uint8))) == 5  # duplicate + weak kept


def test_batched_outputs_decode_the_same(planted: tuple[Path, list], tmp_path: Path) -> None:
    path, expected = planted
    det = scrfd.Scrfd(path, config=scrfd.ScrfdConfig(device="cpu"))
    model = onnx.load(str(path))
    arrays = [numpy_helper.to_array(n.attribute[0].t)[None] for n in model.graph.node]
    batched = scrfd.Scrfd(
        write_model(tmp_path / "batched.onnx", arrays), config=scrfd.ScrfdConfig(device="cpu")
    )
    img = np.zeros((640, 640, 3), np.uint8)
    a, b = det.detect(img), batched.detect(img)
    assert [f.box for f in a] == [f.box for f in b]
    np.testing.assert_allclose(a[0].box, expected[0][0], rtol=1e-6)


def test_nothing_found_on_empty_outputs(tmp_path: Path) -> None:
    det = scrfd.Scrfd(write_model(tmp_path / "m.onnx", blank_outputs()))
    assert det.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert det.largest(np.zeros((480, 640, 3), np.uint8)) is None


def test_letterbox_and_normalisation(tmp_path: Path) -> None:
    det = scrfd.Scrfd(write_model(tmp_path / "m.onnx", blank_outputs()))
    img = np.zeros((100, 400, 3), np.uint8)
    img[..., 0] = 255  # red
    blob, fit = det.preprocess(img)
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32
    assert (fit.width, fit.height) == (640, 160) and fit.scale == pytest.approx(1.6)
    # RGB order, (x - 127.5) / 128, padding is black.
    assert blob[0, 0, 10, 10] == pytest.approx((255 - 127.5) / 128)
    assert blob[0, 1, 10, 10] == pytest.approx(-127.5 / 128)
    assert blob[0, 0, 400, 10] == pytest.approx(-127.5 / 128)


def test_fixed_input_size_of_the_model_wins(tmp_path: Path) -> None:
    path = write_model(tmp_path / "fixed.onnx", blank_outputs(), input_shape=(1, 3, 640, 640))
    det = scrfd.Scrfd(path, config=scrfd.ScrfdConfig(input_size=(320, 320)))
    assert det.input_size == (640, 640)
    assert det.preprocess(np.zeros((100, 100, 3), np.uint8))[0].shape == (1, 3, 640, 640)
    free = scrfd.Scrfd(write_model(tmp_path / "free.onnx", blank_outputs()))
    assert free.input_size == (640, 640)


def test_nms_keeps_best_and_disjoint() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.6, 0.9, 0.7], np.float32)
    assert scrfd.nms(boxes, scores, 0.4) == [1, 2]
    assert scrfd.nms(boxes, scores, 0.99) == [1, 2, 0]


def test_error_paths(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing, match=r"det_10g\.onnx"):
        scrfd.Scrfd(models_dir=str(tmp_path))
    reason = scrfd.unavailable_reason(str(tmp_path))
    assert reason is not None and "insightface/models/buffalo_l/det_10g.onnx" in reason
    assert "non-commercial" in reason
    # A damaged or foreign model file is the server's fault (503), like a missing one.
    bad = write_model(tmp_path / "six.onnx", blank_outputs()[:6], OUTPUT_NAMES[:6])
    with pytest.raises(BadCheckpoint, match="expected 9 outputs"):
        scrfd.Scrfd(bad)
    (tmp_path / "torn.onnx").write_bytes(bad.read_bytes()[:40])
    with pytest.raises(BadCheckpoint, match=r"cannot load the SCRFD model .*torn\.onnx") as err:
        scrfd.Scrfd(tmp_path / "torn.onnx")
    assert err.value.status == 503
    good = write_model(tmp_path / "m.onnx", blank_outputs())
    with pytest.raises(BadInput, match="multiple of 32"):
        scrfd.Scrfd(good, config=scrfd.ScrfdConfig(input_size=(630, 640)))
    with pytest.raises(BadInput, match="RGB uint8"):
        scrfd.Scrfd(good).detect(np.zeros((64, 64), np.float32))
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            scrfd.Scrfd(good, config=scrfd.ScrfdConfig(device="cuda"))
    assert scrfd.Scrfd(good).providers[-1] == "CPUExecutionProvider"


def test_weights_folder_layouts(tmp_path: Path) -> None:
    assert scrfd.find_weights(str(tmp_path)) is None
    flat = tmp_path / "insightface" / "buffalo_l" / "det_10g.onnx"
    flat.parent.mkdir(parents=True)
    write_model(flat, blank_outputs())
    assert scrfd.find_weights(str(tmp_path)) == flat
    official = tmp_path / "insightface" / "models" / "buffalo_l" / "det_10g.onnx"
    official.parent.mkdir(parents=True)
    official.write_bytes(flat.read_bytes())
    assert scrfd.find_weights(str(tmp_path)) == official
    assert scrfd.unavailable_reason(str(tmp_path)) is None


@pytest.mark.skipif(scrfd.find_weights() is None, reason="det_10g.onnx not in the weights folder")
def test_real_detector_finds_the_portrait_face() -> None:
    rgb = cv2.cvtColor(cv2.imread(str(MEDIA / "s0.jpg")), cv2.COLOR_BGR2RGB)
    face = scrfd.Scrfd().largest(rgb)
    assert face is not None and face.score > 0.5
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= rgb.shape[1] and 0 <= y0 < y1 <= rgb.shape[0]


# --- the tracker: full detection every N frames, landmarks in a window between -------------


def d0_frames(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(MEDIA / "d0.mp4"))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        assert ok, "d0.mp4 too short"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


class CountingMesh:
    """The real FaceMesh, counting calls and the image sizes it was given."""

    def __init__(self, fail_on_windows: bool = False) -> None:
        self.mesh = FaceMesh(static=True)
        self.sizes: list[tuple[int, int]] = []
        self.fail_on_windows = fail_on_windows

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        self.sizes.append(rgb.shape[:2])
        if self.fail_on_windows and rgb.shape[:2] == (256, 256):
            return None
        return self.mesh.detect(rgb)

    def close(self) -> None:
        self.mesh.close()


class BoxFrom:
    """A stand-in for SCRFD that returns a fixed box (or nothing)."""

    def __init__(self, box: tuple[float, float, float, float] | None) -> None:
        self.box = box
        self.calls = 0

    def largest(self, rgb: np.ndarray) -> scrfd.Detection | None:
        self.calls += 1
        if self.box is None:
            return None
        return scrfd.Detection(box=self.box, score=0.9, keypoints=np.zeros((5, 2), np.float32))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return d0_frames(7)


def test_full_detection_every_n_frames_and_windows_between(frames: list[np.ndarray]) -> None:
    mesh = CountingMesh()
    tracker = FaceTracker(TrackerConfig(detect_every=3), landmarker=mesh, detector=None)
    assert not tracker.uses_scrfd
    truth = [FaceMesh(static=True).detect(f) for f in frames]
    for frame, expected in zip(frames, truth, strict=True):
        found = tracker.track(frame)
        assert found is not None and expected is not None
        # window landmarks land where whole-frame landmarks do
        err = np.abs(found.points[:, :2] - expected.points[:, :2]).mean()
        assert err < 0.02 * expected.size, err
        assert found.box[0] == pytest.approx(expected.box[0], abs=0.05 * expected.size)
    full = [s for s in mesh.sizes if s != (256, 256)]
    assert tracker.full_detections == len(full) == 3  # frames 1, 4, 7
    assert len(mesh.sizes) == 7
    tracker.reset()
    tracker.track(frames[0])
    assert tracker.full_detections == 4
    tracker.close()


def test_lost_window_falls_back_to_full_detection(frames: list[np.ndarray]) -> None:
    mesh = CountingMesh(fail_on_windows=True)
    tracker = FaceTracker(TrackerConfig(detect_every=5), landmarker=mesh, detector=None)
    for frame in frames[:3]:
        assert tracker.track(frame) is not None
    assert tracker.full_detections == 3  # every window failed, so every frame re-detected
    assert tracker.track(np.full((200, 300, 3), 40, np.uint8)) is None
    tracker.close()


def test_scrfd_box_seeds_the_landmark_window(frames: list[np.ndarray]) -> None:
    expected = FaceMesh(static=True).detect(frames[0])
    assert expected is not None
    x0, y0, x1, y1 = expected.box
    pad = 0.1 * (x1 - x0)  # SCRFD boxes are a little larger than the landmark hull
    detector = BoxFrom((x0 - pad, y0 - pad, x1 + pad, y1 + pad))
    mesh = CountingMesh()
    tracker = FaceTracker(TrackerConfig(detect_every=2), landmarker=mesh, detector=detector)
    assert tracker.uses_scrfd
    found = tracker.track(frames[0])
    assert found is not None
    assert np.abs(found.points[:, :2] - expected.points[:, :2]).mean() < 0.02 * expected.size
    assert mesh.sizes == [(256, 256)]  # the landmarks ran on the window only
    tracker.track(frames[1])
    tracker.track(frames[2])
    assert detector.calls == 2
    detector.box = None
    tracker.reset()
    assert tracker.track(frames[3]) is None  # no box, no face
    tracker.close()


def test_tracker_error_paths(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="detect_every"):
        FaceTracker(TrackerConfig(detect_every=0), landmarker=CountingMesh())
    with pytest.raises(BadInput, match="unknown face detector"):
        make_detector("yolo", str(tmp_path))
    assert make_detector("auto", str(tmp_path)) is None  # no weights: FaceMesh detects
    assert make_detector("mesh", str(tmp_path)) is None
    with pytest.raises(WeightsMissing):
        make_detector("scrfd", str(tmp_path))
    tracker = FaceTracker(landmarker=CountingMesh(), detector=None)
    with pytest.raises(BadInput, match="RGB uint8"):
        tracker.track(np.zeros((64, 64, 3), np.float32))
    tracker.close()
