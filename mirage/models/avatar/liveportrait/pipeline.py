"""LivePortrait's per-frame math on tensors: source preparation, driven keypoints, render.

This is the official inference path (``LivePortraitWrapper`` + ``live_portrait_pipeline``
for a still source and a driving video) with the default options: relative motion to the
driver's first frame, animation region "all", "pose-friendly" driving, stitching on, lip
normalisation on, eye/lip retargeting optional. Images in are numpy; everything between
stays on the device, and ``animate_tensor`` leaves the output there too (for the device
paste-back, ``paste.py``). Cropping lives in ``crop.py``; torch.compile and CUDA graphs of
the render step in ``accel.py``.

Two live-stream departures, both only when retargeting is switched on: the deltas are added
to the driven keypoints (the official relative branch adds them to the source's, which
freezes the head), and the eye target is the mean of both driver eyes (the official takes
the first eye's ratio).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from mirage.models.avatar.liveportrait.accel import Compiled, GraphedRender, compile_mode
from mirage.models.avatar.liveportrait.keypoints import (
    KeypointInfo,
    relative_keypoints,
    retarget,
    scale_motion,
    stitch,
    transform_keypoints,
)
from mirage.models.avatar.liveportrait.spade import SPADEDecoder

log = logging.getLogger(__name__)

#: The networks' input side.
INPUT_SIZE = 256


class Networks(Protocol):
    """The five loaded modules (``load_networks``'s result)."""

    appearance_feature_extractor: nn.Module
    motion_extractor: nn.Module
    warping_module: nn.Module
    spade_generator: nn.Module
    stitching_retargeting_module: Any  # has .stitching, .lip, .eye MLPs


@dataclass
class MotionConfig:
    """Official inference flags (``InferenceConfig``) that matter for a live stream."""

    stitching: bool = True
    eye_retargeting: bool = False
    lip_retargeting: bool = False
    normalize_lip: bool = True
    lip_normalize_threshold: float = 0.03
    driving_multiplier: float = 1.0


@dataclass
class Source:
    """Everything computed once per reference portrait."""

    feature: torch.Tensor  # f_s (1, 32, 16, 64, 64)
    info: KeypointInfo
    keypoints: torch.Tensor  # x_s (1, 21, 3)
    eye_ratios: tuple[float, float]
    lip_ratio: float
    lip_delta: torch.Tensor | None  # closes the source's mouth before animation


@dataclass
class StageTimer:
    """Milliseconds per stage of the last frame; syncs CUDA only when ``enabled``."""

    enabled: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    last: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.last[name] = (time.perf_counter() - start) * 1000.0


def to_image_tensor(rgb: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(256, 256, 3) uint8 → (1, 3, 256, 256) float32 in [0, 1] on ``device``."""
    if rgb.shape != (INPUT_SIZE, INPUT_SIZE, 3) or rgb.dtype != np.uint8:
        raise ValueError(f"network input must be 256x256x3 uint8, got {rgb.dtype} {rgb.shape}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device, non_blocking=True)
    x = x.permute(2, 0, 1)[None].float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] → (H, W, 3) uint8, truncated like the official ``parse_output``."""
    x = (image[0].float().clamp(0, 1) * 255.0).to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().cpu().numpy()


class LivePortraitPipeline:
    """Runs the networks for one session: a cached source and the driver's first frame."""

    def __init__(
        self,
        networks: Networks,
        device: torch.device,
        half: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        motion: MotionConfig | None = None,
        timer: StageTimer | None = None,
        cuda_graphs: bool = False,
    ) -> None:
        self.nets = networks
        self.device = device
        self.half = half and device.type == "cuda"
        self.channels_last = channels_last
        self.motion = motion or MotionConfig()
        self.timer = timer or StageTimer(device=device)
        self._warp: Any = networks.warping_module
        self._generate: Any = networks.spade_generator
        if isinstance(networks.spade_generator, SPADEDecoder):
            # same outputs; spares the per-call weight / sigma division
            networks.spade_generator.fold_spectral_norm()
        if channels_last:
            for module in (networks.motion_extractor, networks.spade_generator):
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        if cuda_graphs and not self.cuda_graphs:
            log.info("liveportrait: cuda_graphs ignored: the device is %s, not CUDA", device)
        if compile:  # the official wrapper compiles W and G only
            mode = compile_mode(device, self.cuda_graphs)
            self._warp = Compiled(self._warp, mode, "warping_module")
            self._generate = Compiled(self._generate, mode, "spade_generator")
        self._compiled = compile
        # CUDA graphs without compile: the eager W → G, captured once
        self._graphed = (
            GraphedRender(self._render, device) if self.cuda_graphs and not compile else None
        )
        self._first: KeypointInfo | None = None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.half:
            # no weight-cast cache under CUDA graphs: a cached cast would outlive the capture
            cache = self._graphed is None
            return torch.autocast(device_type="cuda", dtype=torch.float16, cache_enabled=cache)
        return contextlib.nullcontext()

    def image(self, rgb: np.ndarray) -> torch.Tensor:
        return to_image_tensor(rgb, self.device, self.channels_last)

    @torch.inference_mode()
    def keypoint_info(self, image: torch.Tensor) -> KeypointInfo:
        """The motion extractor's refined output (pose in degrees, rotation, kp, exp, ...)."""
        with self._autocast():
            raw = self.nets.motion_extractor(image=image)
        return KeypointInfo.from_motion(raw)

    @torch.inference_mode()
    def prepare_source(
        self, crop256: np.ndarray, eye_ratios: tuple[float, float], lip_ratio: float
    ) -> Source:
        """Appearance volume, keypoints and lip normalisation of the source crop, once."""
        image = self.image(crop256)
        info = self.keypoint_info(image)
        with self._autocast():
            feature = self.nets.appearance_feature_extractor(source_image=image)["feature_3d"]
        feature = feature.float()
        x_s = transform_keypoints(info)
        lip_delta = None
        if self.motion.normalize_lip and lip_ratio >= self.motion.lip_normalize_threshold:
            ratio = torch.tensor([[lip_ratio, 0.0]], dtype=torch.float32, device=self.device)
            lip_delta = retarget(self.nets.stitching_retargeting_module.lip, x_s, ratio)
        return Source(feature, info, x_s, eye_ratios, lip_ratio, lip_delta)

    def reset(self) -> None:
        """Forget the driver's first frame; the next frame becomes the neutral pose."""
        self._first = None

    @property
    def has_neutral(self) -> bool:
        return self._first is not None

    @torch.inference_mode()
    def driven_keypoints(
        self,
        source: Source,
        driver: KeypointInfo,
        eye_ratios: tuple[float, float] | None = None,
        lip_ratio: float | None = None,
    ) -> torch.Tensor:
        """x_d for this frame: relative motion, then retargeting / stitching (Algorithm 1)."""
        if self._first is None:
            self._first = driver
        cfg, s = self.motion, self.nets.stitching_retargeting_module
        x_s = source.keypoints
        x_d = relative_keypoints(source.info, driver, self._first)
        retargeting = (cfg.eye_retargeting and eye_ratios is not None) or (
            cfg.lip_retargeting and lip_ratio is not None
        )
        if not retargeting:
            if cfg.stitching:
                x_d = stitch(s.stitching, x_s, x_d)
            if source.lip_delta is not None:
                x_d = x_d + source.lip_delta
        else:
            # Live variant of the official retargeting branch: deltas are added to the
            # driven keypoints (its non-relative form), so head motion is kept.
            if cfg.eye_retargeting and eye_ratios is not None:
                target = (eye_ratios[0] + eye_ratios[1]) / 2
                ratio = torch.tensor(
                    [[*source.eye_ratios, target]], dtype=torch.float32, device=self.device
                )
                x_d = x_d + retarget(s.eye, x_s, ratio)
            if cfg.lip_retargeting and lip_ratio is not None:
                ratio = torch.tensor(
                    [[source.lip_ratio, lip_ratio]], dtype=torch.float32, device=self.device
                )
                x_d = x_d + retarget(s.lip, x_s, ratio)
            if cfg.stitching:
                x_d = stitch(s.stitching, x_s, x_d)
        return scale_motion(x_s, x_d, cfg.driving_multiplier)

    def _render(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> torch.Tensor:
        """W then G, timed per stage (the graphed path times both as one "render")."""
        # never synchronise inside a CUDA-graph capture: the graphed path gets a dead timer
        timer = self.timer if self._graphed is None else StageTimer()
        with timer.stage("warp"), self._autocast():
            warped = self._warp(feature_3d=feature, kp_driving=kp_driving, kp_source=kp_source)[
                "out"
            ]
            if self.channels_last:
                warped = warped.contiguous(memory_format=torch.channels_last)
        with timer.stage("generate"), self._autocast():
            image: torch.Tensor = self._generate(feature=warped)["image"]
        return image

    @torch.inference_mode()
    def render_tensor(self, source: Source, x_d: torch.Tensor) -> torch.Tensor:
        """Warp the source volume to ``x_d`` and decode: (1, 3, 512, 512) in [0, 1], on device.

        Under CUDA graphs the tensor is a static buffer the next frame overwrites.
        """
        if self._graphed is not None:
            with self.timer.stage("render"):
                return self._graphed(source.feature, x_d, source.keypoints)
        if self._compiled and self.cuda_graphs:  # inductor's graphs reuse output buffers
            torch.compiler.cudagraph_mark_step_begin()
        return self._render(source.feature, x_d, source.keypoints)

    def render(self, source: Source, x_d: torch.Tensor) -> np.ndarray:
        """``render_tensor`` read back: (512, 512, 3) uint8."""
        image = self.render_tensor(source, x_d)
        with self.timer.stage("readback"):
            return to_uint8_image(image)

    def animate_tensor(
        self,
        source: Source,
        crop256: np.ndarray,
        eye_ratios: tuple[float, float] | None = None,
        lip_ratio: float | None = None,
    ) -> torch.Tensor:
        """One driver crop (256², uint8) → the animated source crop, (1, 3, 512, 512) on device."""
        with self.timer.stage("motion"):
            info = self.keypoint_info(self.image(crop256))
        with self.timer.stage("keypoints"):
            x_d = self.driven_keypoints(source, info, eye_ratios, lip_ratio)
        return self.render_tensor(source, x_d)

    def animate(
        self,
        source: Source,
        crop256: np.ndarray,
        eye_ratios: tuple[float, float] | None = None,
        lip_ratio: float | None = None,
    ) -> np.ndarray:
        """One driver crop (256², uint8) → the animated 512² source crop (uint8)."""
        image = self.animate_tensor(source, crop256, eye_ratios, lip_ratio)
        with self.timer.stage("readback"):
            return to_uint8_image(image)
