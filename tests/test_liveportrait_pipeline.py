"""The liveportrait animator end to end on CPU, with golden-filled weights in the official layout.

Real faces (``media/s0.jpg``, frames of ``media/d0.mp4``), real landmarks, real loader; the
weights are the deterministic fill of ``golden/fill.py``, so the face it draws is noise,
but every geometric and bookkeeping property of the pipeline can be checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mirage.models import create_animator  # noqa: E402
from mirage.models.avatar.liveportrait import animator as lp  # noqa: E402
from mirage.models.avatar.liveportrait import crop as C  # noqa: E402
from mirage.models.avatar.liveportrait.keypoints import stitch  # noqa: E402
from mirage.models.avatar.passthrough import fit_square  # noqa: E402
from mirage.models.base import (  # noqa: E402
    BackendUnavailable,
    BadInput,
    FaceAnimator,
    NoFaceError,
    WeightsMissing,
)
from mirage.models.face.mesh import FaceLandmarks, FaceMesh  # noqa: E402
from tests.conftest import GOLDEN, MEDIA, load_fill  # noqa: E402

LP_GOLDEN = GOLDEN / "liveportrait"
BASE = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")
SUBNETS = {"retarget_shoulder", "retarget_mouth", "retarget_eye"}


def write_filled_weights(root: Path) -> Path:
    """Golden-filled checkpoints, saved like the official files, under ``root/liveportrait``."""
    fill = load_fill()
    lp_dir = root / "liveportrait"
    (lp_dir / "base_models").mkdir(parents=True)
    (lp_dir / "retargeting_models").mkdir()
    for name in (*BASE, "stitching_retargeting_module"):
        man = json.loads((LP_GOLDEN / f"{name}.manifest.json").read_text())
        arrays = fill.fill_state(man["state_dict"], man["fill"]["seed"])  # type: ignore[attr-defined]
        state = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
        if name in BASE:
            torch.save(state, lp_dir / "base_models" / f"{name}.pth")
            continue
        # {'retarget_shoulder': sd, ...}, inner keys with the DDP prefix the loader strips
        nested: dict[str, dict[str, torch.Tensor]] = {sub: {} for sub in SUBNETS}
        for key, value in state.items():
            sub, _, rest = key.partition(".")
            nested[sub]["module." + rest] = value
        torch.save(nested, lp_dir / "retargeting_models" / "stitching_retargeting_module.pth")
    return root


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def video_frames(path: Path, count: int, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    assert len(frames) == count, f"{path} has fewer than {count * step} frames"
    return frames


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_filled_weights(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return read_rgb(MEDIA / "s0.jpg")


@pytest.fixture(scope="module")
def driver_frames() -> list[np.ndarray]:
    return video_frames(MEDIA / "d0.mp4", 3, step=10)


# --- crop geometry (no networks) -----------------------------------------------------------


@pytest.fixture(scope="module")
def portrait_points(portrait: np.ndarray) -> np.ndarray:
    with FaceMesh(static=True) as mesh:
        face = mesh.detect(portrait)
    assert face is not None
    return face.points


def test_source_crop_frames_the_face_like_the_official_crop(
    portrait: np.ndarray, portrait_points: np.ndarray
) -> None:
    crop = C.crop_source(portrait, portrait_points)
    assert crop.image.shape == (256, 256, 3)
    pts = crop.points(portrait_points) * 256 / 512  # matrix maps to the 512 crop
    eyes = (pts[list(C.EYE_A[:2])].mean(0) + pts[list(C.EYE_B[:2])].mean(0)) / 2
    mouth = pts[list(C.MOUTH[:2])].mean(0)
    # eyes-to-mouth axis vertical and centred; face about 1/2.3 of the crop, pushed down
    assert abs(eyes[0] - 128) < 8 and abs(mouth[0] - 128) < 8
    assert 100 < eyes[1] < mouth[1] < 190
    outline = pts[list(C.OUTLINE)]
    extent = (outline.max(0) - outline.min(0)).max()
    assert pytest.approx(extent, rel=0.02) == 256 / 2.3


def test_crop_undoes_head_roll(portrait: np.ndarray, portrait_points: np.ndarray) -> None:
    h, w = portrait.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 25.0, 1.0)
    turned = cv2.warpAffine(portrait, rot, (w, h))
    with FaceMesh(static=True) as mesh:
        face = mesh.detect(turned)
    assert face is not None
    upright = C.crop_source(portrait, portrait_points).image.astype(np.float32)
    rolled = C.crop_source(turned, face.points).image.astype(np.float32)
    centre = slice(64, 192)
    err = np.abs(upright[centre, centre] - rolled[centre, centre]).mean()
    assert err < 12.0, err  # same face, same framing, despite the 25° roll
    rect = C.face_rect(face.points, C.SOURCE_CROP)
    assert np.degrees(rect.angle) == pytest.approx(-25.0, abs=4.0)
    # the driving crop keeps the frame upright
    driver = C.crop_face(turned, face.points, C.DRIVER_CROP)
    assert driver.image.shape == (256, 256, 3)
    np.testing.assert_allclose(driver.matrix[0, 1], 0.0, atol=1e-12)


def test_eye_and_lip_ratios(portrait_points: np.ndarray, driver_frames: list[np.ndarray]) -> None:
    a, b = C.eye_ratios(portrait_points)
    assert 0.15 < a < 0.6 and 0.15 < b < 0.6  # open eyes
    assert C.lip_ratio(portrait_points) < 0.05  # closed mouth
    squashed = portrait_points.copy()
    squashed[:, 1] *= 0.5  # flatten the face vertically: every gap halves
    assert C.eye_ratios(squashed)[0] == pytest.approx(a * 0.5, rel=0.15)


def test_driving_crop_average() -> None:
    a = C.FaceRect(center=(100.0, 50.0), size=200.0, angle=3.1)
    b = C.FaceRect(center=(110.0, 40.0), size=220.0, angle=-3.1)
    assert C.blend_rect(a, b, 1.0).center == pytest.approx(b.center)
    half = C.blend_rect(a, b, 0.5)
    assert half.center == pytest.approx((105.0, 45.0)) and half.size == pytest.approx(210.0)
    assert abs(np.cos(half.angle) + 1.0) < 1e-3  # through ±π, not through 0


def test_output_window_frames_the_face() -> None:
    face = C.FaceRect(center=(300.0, 130.0), size=200.0, angle=0.0)
    assert lp.output_window(704, 600, face, 1.5) == (150, 0, 300)  # clamped at the top
    assert lp.output_window(704, 600, face, 0.0) == (0, 0, 600)  # the largest square
    assert lp.output_window(704, 600, face, 10.0) == (0, 0, 600)
    centred = C.FaceRect(center=(300.0, 352.0), size=200.0, angle=0.0)
    assert lp.output_window(704, 600, centred, 1.0) == (200, 252, 200)
    m = lp.window_matrix(200, 252, 200, 400)  # as cv2.resize maps pixel centres
    np.testing.assert_allclose(m[:2] @ [200.0, 252.0, 1.0], [0.5, 0.5])


def expected_background(
    animator: lp.LivePortraitAnimator, image: np.ndarray, size: int
) -> np.ndarray:
    """The reference's square around the face, resized as ``fit_square`` resizes."""
    ref = animator._reference
    assert ref is not None
    x0, y0, side = lp.output_window(*image.shape[:2], ref.face, animator.frame_scale)
    return fit_square(image[y0 : y0 + side, x0 : x0 + side], size)


def test_feather_mask_and_paste_back_keep_the_background() -> None:
    mask = C.feather_mask(512)
    assert mask[256, 256] == 1.0 and mask[0, 0] == 0.0 and mask[0, 256] == 0.0
    row = mask[256, :256]
    assert np.all(np.diff(row) >= 0)  # rises monotonically towards the centre
    rng = np.random.RandomState(1)
    background = rng.randint(0, 256, (300, 400, 3)).astype(np.uint8)
    # the crop covers a 200x200 square at (100, 50): crop pixel = 2.56 * (image - origin)
    to_output = np.array([[200 / 512, 0, 100], [0, 200 / 512, 50], [0, 0, 1.0]])
    paste = C.PasteBack(background, to_output)
    face = np.full((512, 512, 3), 7, np.uint8)
    out = paste.paste(face)
    assert np.array_equal(out[:, :100], background[:, :100])
    assert np.array_equal(out[:50], background[:50])
    assert np.array_equal(out[260:], background[260:])
    assert np.all(out[150, 200] == 7)  # the centre is the pasted crop
    assert background[0, 0].tolist() == out[0, 0].tolist()  # background is not modified


# --- the animator on stand-in networks (fast): the real S, fake F/M/W/G ---------------------


def filled(name: str) -> torch.nn.Module:
    """A network from ``build_network`` with the golden fill (strict load)."""
    from mirage.models.avatar.liveportrait.networks import build_network

    fill = load_fill()
    man = json.loads((LP_GOLDEN / f"{name}.manifest.json").read_text())
    module = build_network(name)
    fill.load_into(module, fill.fill_state(man["state_dict"], man["fill"]["seed"]))  # type: ignore[attr-defined]
    return module.eval()


def raw_motion(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "pitch": torch.randn(1, 66, generator=g),
        "yaw": torch.randn(1, 66, generator=g),
        "roll": torch.randn(1, 66, generator=g),
        "t": torch.randn(1, 3, generator=g) * 0.05,
        "exp": torch.randn(1, 63, generator=g) * 0.02,
        "scale": 1.5 + 0.1 * torch.rand(1, 1, generator=g),
        "kp": torch.randn(1, 63, generator=g) * 0.3,
    }


class FakeMotion(torch.nn.Module):
    """Returns a different fixed motion for each distinct input image (by its mean)."""

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return raw_motion(int(image.double().mean().item() * 1e6))


class FakeAppearance(torch.nn.Module):
    def forward(self, source_image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feature_3d": torch.zeros(1, 32, 2, 4, 4)}


class FakeWarp(torch.nn.Module):
    """Records the keypoints it is asked to warp to."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(
        self, feature_3d: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.calls.append((kp_driving.clone(), kp_source.clone()))
        return {"out": torch.zeros(1, 256, 64, 64)}


class FakeGenerator(torch.nn.Module):
    """Paints the 512 crop one flat green, so pasted pixels are easy to find."""

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        image = torch.zeros(1, 3, 512, 512)
        image[:, 1] = 1.0
        return {"image": image}


class StandIn:
    def __init__(self) -> None:
        self.appearance_feature_extractor = FakeAppearance()
        self.motion_extractor = FakeMotion()
        self.warping_module = FakeWarp()
        self.spade_generator = FakeGenerator()
        self.stitching_retargeting_module = filled("stitching_retargeting_module")


@pytest.fixture()
def standin(portrait: np.ndarray) -> Iterator[tuple[lp.LivePortraitAnimator, StandIn]]:
    nets = StandIn()
    made = lp.LivePortraitAnimator(networks=nets, device="cpu", profile=True, detector="mesh")
    made.set_reference(portrait)
    yield made, nets
    made.close()


def test_animates_real_frames_and_pastes_into_the_reference(
    standin: tuple[lp.LivePortraitAnimator, StandIn],
    portrait: np.ndarray,
    driver_frames: list[np.ndarray],
) -> None:
    animator, _ = standin
    assert isinstance(animator, FaceAnimator)
    start = time.perf_counter()
    out = animator.animate(driver_frames[0], 512)
    wall_ms = (time.perf_counter() - start) * 1000.0
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    timings = animator.timings  # of this frame; read before the checks below animate again
    reference = expected_background(animator, portrait, 512)
    paste = animator._paste_back(512)
    y0, y1, x0, x1 = paste.window
    outside = np.ones((512, 512), bool)
    outside[y0:y1, x0:x1] = paste.mask[..., 0] == 0
    assert 0.05 < outside.mean() < 0.95
    assert np.array_equal(out[outside], reference[outside])  # pixel for pixel
    inside = np.zeros((512, 512), bool)
    inside[y0:y1, x0:x1] = paste.mask[..., 0] > 0.999
    assert np.all(out[inside] == [0, 255, 0])
    assert abs((x0 + x1) / 2 - 256) < 30  # the output is framed on the face
    assert (x1 - x0) < 0.8 * 512  # with room around it
    # Every stage ran and was timed; they follow one another inside the frame's total,
    # which the clock around the call (measured apart) bounds.
    stages = ("track", "crop", "motion", "keypoints", "warp", "generate", "paste")
    assert all(timings[stage] > 0.0 for stage in stages), timings
    assert sum(timings[stage] for stage in stages) <= timings["total"] + 0.01, timings
    assert 0.0 < timings["total"] <= wall_ms, (timings, wall_ms)
    assert animator.animate(driver_frames[1], 200).shape == (200, 200, 3)


def test_relative_motion_to_the_first_driver_frame(
    standin: tuple[lp.LivePortraitAnimator, StandIn], driver_frames: list[np.ndarray]
) -> None:
    animator, nets = standin
    ref = animator._reference
    assert ref is not None
    x_s = ref.source.keypoints
    neutral = stitch(nets.stitching_retargeting_module.stitching, x_s, x_s)
    for frame in driver_frames:
        animator.animate(frame, 256)
    kp = [k for k, _ in nets.warping_module.calls]
    assert all(torch.equal(src, x_s) for _, src in nets.warping_module.calls)
    torch.testing.assert_close(kp[0], neutral, rtol=1e-5, atol=1e-6)  # first frame = source pose
    assert not torch.allclose(kp[1], kp[0]) and not torch.allclose(kp[2], kp[1])
    animator.reset()  # the next frame becomes the neutral pose
    animator.animate(driver_frames[2], 256)
    torch.testing.assert_close(nets.warping_module.calls[-1][0], neutral, rtol=1e-5, atol=1e-6)


def test_lip_normalisation_and_retargeting(
    standin: tuple[lp.LivePortraitAnimator, StandIn],
) -> None:
    animator, _ = standin
    pipe = animator.pipeline
    crop = np.full((256, 256, 3), 100, np.uint8)
    closed = pipe.prepare_source(crop, (0.3, 0.3), 0.01)
    assert closed.lip_delta is None  # below the official 0.03 threshold
    open_mouth = pipe.prepare_source(crop, (0.3, 0.3), 0.2)
    assert open_mouth.lip_delta is not None
    torch.testing.assert_close(open_mouth.keypoints, closed.keypoints)
    info = pipe.keypoint_info(pipe.image(np.full((256, 256, 3), 90, np.uint8)))
    pipe.reset()
    plain = pipe.driven_keypoints(closed, info, (0.3, 0.3), 0.2)
    pipe.reset()
    with_lip_delta = pipe.driven_keypoints(open_mouth, info, (0.3, 0.3), 0.2)
    torch.testing.assert_close(with_lip_delta - plain, open_mouth.lip_delta)
    pipe.motion.eye_retargeting = pipe.motion.lip_retargeting = True
    pipe.reset()
    retargeted = pipe.driven_keypoints(closed, info, (0.3, 0.3), 0.2)
    assert retargeted.shape == (1, 21, 3) and not torch.allclose(retargeted, plain)


def test_driver_without_face_holds_the_last_frame(
    standin: tuple[lp.LivePortraitAnimator, StandIn],
    portrait: np.ndarray,
    driver_frames: list[np.ndarray],
) -> None:
    animator, _ = standin
    blank = np.full((480, 640, 3), 128, np.uint8)
    # before any face: the still reference
    assert np.array_equal(
        animator.animate(blank, 256), expected_background(animator, portrait, 256)
    )
    last = animator.animate(driver_frames[0], 256)
    assert np.array_equal(animator.animate(blank, 256), last)


class Unsure:
    """Wraps a tracker; reports the first ``count`` faces as half out of the picture."""

    def __init__(self, tracker: object, count: int) -> None:
        self.tracker, self.count = tracker, count

    def track(self, rgb: np.ndarray) -> object:
        face = self.tracker.track(rgb)  # type: ignore[attr-defined]
        if face is not None and self.count > 0:
            self.count -= 1
            face.score = 0.5
        return face

    def reset(self) -> None:
        self.tracker.reset()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.tracker.close()  # type: ignore[attr-defined]


def test_neutral_pose_waits_for_a_whole_face(
    standin: tuple[lp.LivePortraitAnimator, StandIn],
    portrait: np.ndarray,
    driver_frames: list[np.ndarray],
) -> None:
    animator, nets = standin
    animator.tracker = Unsure(animator.tracker, 1)  # type: ignore[assignment]
    animator.reset()
    held = animator.animate(driver_frames[0], 256)
    assert np.array_equal(held, expected_background(animator, portrait, 256))
    assert nets.warping_module.calls == [] and not animator.pipeline.has_neutral
    animator.animate(driver_frames[1], 256)  # a whole face: this is the neutral pose
    assert len(nets.warping_module.calls) == 1 and animator.pipeline.has_neutral


class Recorded:
    """A reference landmarker that hands back one recorded face (or none)."""

    def __init__(self, face: FaceLandmarks | None) -> None:
        self.face, self.calls = face, 0

    def detect(self, rgb: np.ndarray) -> FaceLandmarks | None:
        self.calls += 1
        return self.face

    def close(self) -> None:
        pass


def test_recorded_reference_landmarks_stand_in_for_mediapipe(
    standin: tuple[lp.LivePortraitAnimator, StandIn], portrait: np.ndarray
) -> None:
    """bench/gpu.py's path where MediaPipe is absent: the same crop from recorded points."""
    animator, _ = standin  # its reference went through MediaPipe
    with FaceMesh(static=True) as mesh:
        face = mesh.detect(portrait)
    replay = Recorded(face)
    made = lp.LivePortraitAnimator(
        networks=StandIn(), device="cpu", detector="mesh", reference_landmarker=replay
    )
    made.set_reference(portrait)
    assert replay.calls == 1 and made._reference is not None and animator._reference is not None
    np.testing.assert_allclose(made._reference.crop_matrix, animator._reference.crop_matrix)
    made.reference_landmarker = Recorded(None)
    with pytest.raises(NoFaceError):
        made.set_reference(portrait)
    made.close()


def test_reference_without_face_raises(standin: tuple[lp.LivePortraitAnimator, StandIn]) -> None:
    animator, _ = standin
    rng = np.random.RandomState(3)
    noise = cv2.GaussianBlur(rng.randint(0, 256, (360, 360, 3)).astype(np.uint8), (9, 9), 3)
    before = animator._reference
    with pytest.raises(NoFaceError):
        animator.set_reference(noise)
    assert animator._reference is before  # the previous reference stays in use


def test_bad_inputs_raise(standin: tuple[lp.LivePortraitAnimator, StandIn]) -> None:
    animator, nets = standin
    with pytest.raises(BadInput):
        animator.animate(np.zeros((64, 64), np.uint8), 512)
    with pytest.raises(BadInput):
        animator.animate(np.zeros((64, 64, 3), np.float32), 512)
    with pytest.raises(BadInput, match="size"):
        animator.animate(np.zeros((64, 64, 3), np.uint8), 8)
    with pytest.raises(BadInput):
        animator.set_reference(np.zeros((64, 64, 4), np.uint8))
    fresh = lp.LivePortraitAnimator(networks=nets, device="cpu", tracker=animator.tracker)
    with pytest.raises(BadInput, match="set_reference"):
        fresh.animate(np.zeros((64, 64, 3), np.uint8), 512)
    with pytest.raises(BadInput, match="device"):
        lp.LivePortraitAnimator(networks=nets, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            lp.LivePortraitAnimator(networks=nets, device="cuda")
    with pytest.raises(BadInput, match="frame_scale"):
        lp.LivePortraitAnimator(networks=nets, device="cpu", frame_scale=-1.0)
    with pytest.raises(BadInput, match="crop_smoothing"):
        lp.LivePortraitAnimator(networks=nets, device="cpu", crop_smoothing=0.0)


def test_missing_weights_are_named(tmp_path: Path) -> None:
    from mirage.models.avatar.liveportrait.loader import CHECKPOINT_FILES

    reason = lp.unavailable_reason(str(tmp_path))
    assert reason is not None and "liveportrait" in reason and ".pth" in reason
    assert lp.preferred(str(tmp_path)) is False
    with pytest.raises(WeightsMissing, match=r"\.pth"):
        create_animator("liveportrait", models_dir=str(tmp_path), device="cpu")
    for rel in CHECKPOINT_FILES.values():  # presence is what is checked; contents are not
        if "warping_module" not in rel:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(b"")
    reason = lp.unavailable_reason(str(tmp_path))
    assert reason is not None and "warping_module.pth" in reason
    with pytest.raises(WeightsMissing, match=r"warping_module\.pth"):
        lp.LivePortraitAnimator(models_dir=str(tmp_path), device="cpu")
    (tmp_path / CHECKPOINT_FILES["warping_module"]).write_bytes(b"")
    assert lp.unavailable_reason(str(tmp_path)) is None
    assert lp.preferred(str(tmp_path)) is torch.cuda.is_available()


# --- the real networks, golden-filled, through the real loader (slow on CPU) ----------------


@pytest.mark.slow
def test_filled_weights_animate_a_real_frame(
    weights_dir: Path, portrait: np.ndarray, driver_frames: list[np.ndarray]
) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    animator = create_animator(
        "liveportrait", models_dir=str(weights_dir), device="cpu", profile=True, detector="mesh"
    )
    assert isinstance(animator, lp.LivePortraitAnimator)
    animator.set_reference(portrait)
    driver = driver_frames[0]
    out = animator.animate(driver, 512)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - fit_square(driver, 512).astype(int)).mean() > 20
    reference = expected_background(animator, portrait, 512)
    paste = animator._paste_back(512)
    y0, y1, x0, x1 = paste.window
    outside = np.ones((512, 512), bool)
    outside[y0:y1, x0:x1] = paste.mask[..., 0] == 0
    assert np.array_equal(out[outside], reference[outside])  # the reference's own pixels
    inside = np.zeros((512, 512), bool)
    inside[y0:y1, x0:x1] = paste.mask[..., 0] > 0.99
    drawn = out[inside].astype(int)
    assert np.abs(drawn - reference[inside].astype(int)).mean() > 5  # the face was redrawn
    assert 20 < drawn.mean() < 235  # a finite, unsaturated drawing
    assert set(animator.timings) >= {"track", "crop", "motion", "warp", "generate", "paste"}
    animator.close()


@pytest.mark.slow
async def test_a_real_frame_goes_through_liveportrait_inside_the_server(
    weights_dir: Path, driver_frames: list[np.ndarray], start_server: Any
) -> None:
    """Filled weights on CPU, a real face over WebRTC: the avatar frame that comes back
    is the reference portrait (the astronaut), not the driver."""
    import asyncio

    from mirage.client.probe import Probe
    from mirage.models.avatar.reference import default_reference
    from mirage.state import SERVER
    from tests.server_fixtures import base_url

    server = await start_server(models_dir=str(weights_dir))
    frames = [fit_square(f, 512) for f in driver_frames]
    probe = Probe(
        base_url(server),
        audio=False,
        images=frames,
        keep_images=True,
        options={"face": "liveportrait", "face_options": {"device": "cpu", "detector": "mesh"}},
    )
    try:
        await probe.connect()
        for _ in range(600):
            if probe.received.last_image is not None:
                break
            await asyncio.sleep(0.1)
        image = probe.received.last_image
        assert image is not None, "no animated frame came back within 60 s"
        side = image.shape[0]
        supervised = server.app[SERVER].sessions[probe.session_id].backends.animator
        animator = supervised.guard.model  # type: ignore[attr-defined]
        assert isinstance(animator, lp.LivePortraitAnimator)
        assert supervised.guard.timeouts == 0, "seconds a frame on a CPU is slow, not hung"  # type: ignore[attr-defined]
        # Outside the pasted face the output is the reference's own pixels (over VP8).
        reference = expected_background(animator, default_reference(), side).astype(int)
        driver = fit_square(frames[0], side).astype(int)
        border = np.zeros((side, side), bool)
        band = side // 10
        border[:band] = border[-band:] = True
        border[:, :band] = border[:, -band:] = True
        got = image.astype(int)[border]
        to_ref = np.abs(got - reference[border]).mean()
        to_driver = np.abs(got - driver[border]).mean()
        assert to_ref < 12 and to_driver > 3 * to_ref, (to_ref, to_driver)
        # ...and inside, LivePortrait drew something: not the driver's face either.
        centre = (slice(side // 4, 3 * side // 4),) * 2
        assert np.abs(image[centre].astype(int) - driver[centre]).mean() > 20
    finally:
        await probe.close()
