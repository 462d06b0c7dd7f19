"""LivePortrait speed options on CPU: device paste-back, torch.compile, CUDA graphs (guarded).

The torch paste-back must match the numpy one on a real image and leave exactly the same
pixels untouched; torch.compile must match eager on the stitching MLP, and fall back to
eager (logged) when the C++ compiler inductor needs is missing; CUDA graphs are ignored,
with a log line, off CUDA. The CUDA paths themselves run only where a GPU is present.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mirage.models.avatar.liveportrait import accel  # noqa: E402
from mirage.models.avatar.liveportrait import animator as lp  # noqa: E402
from mirage.models.avatar.liveportrait import crop as C  # noqa: E402
from mirage.models.avatar.liveportrait.paste import DevicePasteBack  # noqa: E402
from mirage.models.avatar.liveportrait.pipeline import (  # noqa: E402
    LivePortraitPipeline,
    to_uint8_image,
)
from mirage.models.avatar.passthrough import fit_square  # noqa: E402
from mirage.models.base import BadInput  # noqa: E402
from mirage.models.face.mesh import FaceMesh  # noqa: E402
from tests.conftest import MEDIA  # noqa: E402
from tests.test_liveportrait_pipeline import StandIn, filled, read_rgb, video_frames  # noqa: E402

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return read_rgb(MEDIA / "s0.jpg")


@pytest.fixture(scope="module")
def geometry(portrait: np.ndarray) -> tuple[C.Crop, C.FaceRect]:
    """The real source crop of the portrait and its face square."""
    with FaceMesh(static=True) as mesh:
        face = mesh.detect(portrait)
    assert face is not None
    return C.crop_face(portrait, face.points, C.SOURCE_CROP), C.face_rect(
        face.points, C.SOURCE_CROP
    )


def host_paste(portrait: np.ndarray, crop: C.Crop, rect: C.FaceRect, size: int) -> C.PasteBack:
    """The animator's paste-back for this portrait, output ``size``."""
    h, w = portrait.shape[:2]
    x0, y0, side = lp.output_window(h, w, rect, 1.5)
    to_output = lp.window_matrix(x0, y0, side, size) @ np.linalg.inv(crop.matrix)
    background = fit_square(portrait[y0 : y0 + side, x0 : x0 + side], size)
    return C.PasteBack(background, to_output)


def generated_like(crop: C.Crop) -> torch.Tensor:
    """A generator-style (1, 3, 512, 512) float image: the face crop, flipped and dimmed."""
    image = torch.from_numpy(np.ascontiguousarray(crop.image[::-1])).permute(2, 0, 1)[None]
    return image.float() / 255.0 * 0.9 + 0.03


# --- device paste-back ------------------------------------------------------------------


@pytest.mark.parametrize("size", [512, 300])
def test_torch_paste_back_equals_numpy(
    portrait: np.ndarray, geometry: tuple[C.Crop, C.FaceRect], size: int
) -> None:
    crop, rect = geometry
    host = host_paste(portrait, crop, rect, size)
    device = DevicePasteBack(host, torch.device("cpu"))
    assert device.window == host.window and device.mask is host.mask
    image = generated_like(crop)
    want = host.paste(to_uint8_image(image))
    got = device.paste(image)
    assert got.shape == want.shape == (size, size, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())
    # the mask edge is exactly the reference's: every pixel outside the mask is untouched
    y0, y1, x0, x1 = host.window
    outside = np.ones((size, size), bool)
    outside[y0:y1, x0:x1] = host.mask[..., 0] == 0
    assert 0.05 < outside.mean() < 0.95
    assert np.array_equal(got[outside], host.background[outside])
    assert (got[~outside] != host.background[~outside]).any()  # the face was pasted
    # fp16 generator output (autocast on CUDA) pastes the same
    np.testing.assert_array_equal(device.paste(image.half()), device.paste(image.half().float()))


def test_torch_paste_back_edges(portrait: np.ndarray, geometry: tuple[C.Crop, C.FaceRect]) -> None:
    crop, rect = geometry
    device = DevicePasteBack(host_paste(portrait, crop, rect, 256), torch.device("cpu"))
    with pytest.raises(ValueError, match="512"):
        device.paste(torch.zeros(1, 3, 256, 256))
    # a crop that maps entirely outside the output: the background, unchanged
    background = np.full((64, 64, 3), 9, np.uint8)
    away = np.array([[0.1, 0.0, 500.0], [0.0, 0.1, 500.0], [0.0, 0.0, 1.0]])
    empty = DevicePasteBack(C.PasteBack(background, away), torch.device("cpu"))
    assert np.array_equal(empty.paste(torch.ones(1, 3, 512, 512)), background)


def test_animator_paste_option(portrait: np.ndarray) -> None:
    frame = video_frames(MEDIA / "d0.mp4", 1)[0]
    outputs = {}
    for mode in ("numpy", "torch"):
        animator = lp.LivePortraitAnimator(
            networks=StandIn(), device="cpu", detector="mesh", paste=mode
        )
        assert animator.device_paste is (mode == "torch")
        animator.set_reference(portrait)
        outputs[mode] = animator.animate(frame, 320)
        kind = DevicePasteBack if mode == "torch" else C.PasteBack
        assert isinstance(animator._paste_back(320), kind)
        animator.close()
    diff = np.abs(outputs["numpy"].astype(int) - outputs["torch"].astype(int))
    assert diff.max() <= 1
    auto = lp.LivePortraitAnimator(networks=StandIn(), device="cpu", detector="mesh")
    assert auto.device_paste is False  # auto: numpy on the CPU, torch on CUDA
    auto.close()
    with pytest.raises(BadInput, match="unknown paste 'gpu'"):
        lp.LivePortraitAnimator(networks=StandIn(), device="cpu", paste="gpu")


# --- torch.compile ------------------------------------------------------------------------


def test_compile_matches_eager_on_the_stitching_network() -> None:
    torch._dynamo.reset()
    mlp = filled("stitching_retargeting_module").stitching
    compiled = accel.Compiled(mlp, accel.compile_mode(torch.device("cpu"), False), "stitching")
    x = torch.randn(1, 126, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got, want = compiled(x), mlp(x)
    assert compiled.active, compiled.fallback_reason
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError), torch.inference_mode():  # a model error propagates
        compiled(torch.randn(1, 7))
    assert compiled.active


def test_compile_falls_back_to_eager_without_a_compiler(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch._inductor.config as inductor

    torch._dynamo.reset()
    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/g++",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    mlp = filled("stitching_retargeting_module").lip
    compiled = accel.Compiled(mlp, None, "lip")
    x = torch.randn(1, 65, generator=torch.Generator().manual_seed(1))
    with caplog.at_level(logging.WARNING, logger=accel.__name__), torch.inference_mode():
        got = compiled(x)
        torch.testing.assert_close(got, mlp(x))
        torch.testing.assert_close(compiled(x), got)  # stays eager
    assert not compiled.active
    assert "C++ compiler" in (compiled.fallback_reason or "")
    assert "torch.compile of lip failed, running it eagerly" in caplog.text
    torch._dynamo.reset()


def test_compile_modes_and_pipeline_wiring(caplog: pytest.LogCaptureFixture) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert accel.compile_mode(cpu, True) is None
    assert accel.compile_mode(cuda, False) == "max-autotune-no-cudagraphs"
    assert accel.compile_mode(cuda, True) == "max-autotune"
    nets = StandIn()
    pipe = LivePortraitPipeline(nets, cpu, compile=True)  # wraps W and G, compiles lazily
    assert isinstance(pipe._warp, accel.Compiled) and pipe._warp.mode is None
    assert isinstance(pipe._generate, accel.Compiled) and pipe._warp.eager is nets.warping_module
    with pytest.raises(ValueError, match="CUDA"):
        accel.GraphedRender(pipe._render, cpu)


def test_cuda_graphs_are_ignored_with_a_log_line_on_cpu(
    portrait: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    frame = video_frames(MEDIA / "d0.mp4", 1)[0]
    with caplog.at_level(logging.INFO, logger="mirage.models.avatar.liveportrait.pipeline"):
        animator = lp.LivePortraitAnimator(
            networks=StandIn(), device="cpu", detector="mesh", cuda_graphs=True, profile=True
        )
    assert "cuda_graphs ignored: the device is cpu" in caplog.text
    assert animator.pipeline.cuda_graphs is False and animator.pipeline._graphed is None
    animator.set_reference(portrait)
    out = animator.animate(frame, 256)
    assert out.shape == (256, 256, 3) and {"warp", "generate"} <= set(animator.timings)
    animator.close()


# --- on a GPU only --------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_graphed_render_matches_eager_on_cuda() -> None:
    device = torch.device("cuda")
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).to(device).eval()

    def render(f: torch.Tensor, kd: torch.Tensor, ks: torch.Tensor) -> Any:
        return conv(f) + (kd - ks).mean()

    graphed = accel.GraphedRender(render, device)
    f = torch.randn(1, 3, 32, 32, device=device)
    ks = torch.randn(1, 21, 3, device=device)
    with torch.inference_mode():
        for _ in range(3):
            kd = torch.randn(1, 21, 3, device=device)
            torch.testing.assert_close(graphed(f, kd, ks).clone(), render(f, kd, ks))
        f2 = torch.randn(1, 3, 32, 32, device=device)  # a new reference: copied in
        torch.testing.assert_close(graphed(f2, kd, ks).clone(), render(f2, kd, ks))
    assert graphed.captures == 1


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_device_paste_back_on_cuda(
    portrait: np.ndarray, geometry: tuple[C.Crop, C.FaceRect]
) -> None:
    crop, rect = geometry
    host = host_paste(portrait, crop, rect, 512)
    image = generated_like(crop)
    want = host.paste(to_uint8_image(image))
    got = DevicePasteBack(host, torch.device("cuda")).paste(image.cuda())
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
