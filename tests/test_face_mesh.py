"""The shipped face landmark model on real portraits (mirage.models.face.mesh)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from skimage import data

from mirage.models.base import BadInput
from mirage.models.face.mesh import NUM_POINTS, FaceLandmarks, FaceMesh
from tests.conftest import MEDIA


def _load(name: str) -> np.ndarray:
    image = cv2.imread(str(MEDIA / name))
    assert image is not None, f"cannot read {MEDIA / name}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    detector = FaceMesh(static=True, max_faces=4)
    yield detector
    detector.close()


@pytest.mark.parametrize("name", ["s0.jpg", "s1.jpg", "s12.jpg", "d8.jpg", "astronaut"])
def test_landmarks_on_real_portraits(mesh: FaceMesh, name: str) -> None:
    image = data.astronaut() if name == "astronaut" else _load(name)
    face = mesh.detect(image)
    assert isinstance(face, FaceLandmarks)
    assert face.points.shape == (NUM_POINTS, 3) and face.points.dtype == np.float32
    h, w = image.shape[:2]
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert face.size > 0.1 * min(h, w)  # a portrait: the face is a good part of it
    assert 0.9 <= face.score <= 1.0
    p = face.points
    # Pixel coordinates and anatomy: the subject's right eye (33) is on the image
    # left of the left eye (263), the nose tip (1) between them and below, the chin
    # (152) lowest, the iris centres (468, 473) inside their eyes.
    assert p[33, 0] < p[1, 0] < p[263, 0]
    assert p[1, 1] > p[33, 1] and p[152, 1] > p[1, 1]
    assert p[33, 0] < p[468, 0] < p[133, 0]
    assert p[362, 0] < p[473, 0] < p[263, 0]
    assert p[1, 2] < p[234, 2]  # the nose is nearer the camera than the cheek's edge


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    h = max(left.shape[0], right.shape[0]) + 10
    canvas = np.full((h, left.shape[1] + right.shape[1] + 20, 3), 128, dtype=np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + 20 :] = right
    return canvas


@pytest.mark.parametrize("s12_left", [True, False])
def test_largest_face_wins(mesh: FaceMesh, s12_left: bool) -> None:
    # s12's face fills more of its picture: at these sizes it is the larger face.
    s12 = cv2.resize(_load("s12.jpg"), (240, 320), interpolation=cv2.INTER_AREA)
    s0 = cv2.resize(_load("s0.jpg"), (420, 493), interpolation=cv2.INTER_AREA)
    canvas = _side_by_side(s12, s0) if s12_left else _side_by_side(s0, s12)
    faces = mesh.detect_all(canvas)
    assert len(faces) == 2
    assert faces[0].size > 1.15 * faces[1].size
    best = mesh.detect(canvas)
    assert best is not None
    centre_x = (best.box[0] + best.box[2]) / 2
    assert (centre_x < 240) if s12_left else (centre_x > 440)


def test_no_face_gives_none(mesh: FaceMesh) -> None:
    assert mesh.detect(data.coffee()) is None
    gradient = np.repeat(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert mesh.detect(np.ascontiguousarray(np.repeat(gradient, 256, axis=0))) is None


def test_tracking_mode_follows_a_video() -> None:
    cap = cv2.VideoCapture(str(MEDIA / "d0.mp4"))
    found = []
    with FaceMesh(static=False) as tracker:
        for _ in range(5):
            ok, frame = cap.read()
            assert ok
            face = tracker.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            assert face is not None
            found.append(face.points)
    cap.release()
    # A nearly still head: consecutive frames agree to a few pixels.
    steps = [np.abs(a[:, :2] - b[:, :2]).mean() for a, b in itertools.pairwise(found)]
    assert max(steps) < 3.0


def test_scaled_landmarks(mesh: FaceMesh) -> None:
    """Landmarks found on an image shrunk by half, scaled by two, match the full image's."""
    image = _load("s0.jpg")
    h, w = image.shape[:2]
    half = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    full, small = mesh.detect(image), mesh.detect(half)
    assert full is not None and small is not None
    up = small.scaled(2.0)
    width = full.box[2] - full.box[0]
    assert float(np.median(np.abs(up.points[:, :2] - full.points[:, :2]))) < 0.02 * width
    depth = float(np.ptp(up.points[:, 2]) / np.ptp(full.points[:, 2]))
    assert 0.9 < depth < 1.1  # z is in pixels too
    assert np.allclose(up.box, full.box, atol=0.03 * width)
    assert up.score == small.score
    assert np.allclose(small.points, small.scaled(1.0).points)


def test_bad_input_and_closed_graph() -> None:
    detector = FaceMesh(static=True)
    with pytest.raises(BadInput):
        detector.detect(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(BadInput):
        detector.detect(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(BadInput):
        detector.detect(np.zeros((8, 8, 3), dtype=np.uint8))
    detector.close()
    detector.close()  # closing twice is harmless
    with pytest.raises(BadInput, match="closed"):
        detector.detect(data.astronaut())
    with pytest.raises(BadInput):
        FaceMesh(max_faces=0)
