"""The ``liveportrait`` FaceAnimator: tracker → crop → LivePortrait → feathered paste-back.

Per reference (``set_reference``): landmarks, the official 512 → 256 source crop,
appearance volume and source keypoints, all cached. Per driver frame (``animate``): the
tracked face is cropped (official driving crop), its motion is taken relative to the
driver's first frame, and the 512 generator output is pasted, through a feathered mask,
into the square of the reference around the face that is the output, so pixels away
from the face are the reference's own.

Landmarks: MediaPipe's (the tracker) locate the face; when the weights folder holds the
official 203-point model (``liveportrait/landmark.onnx``) it refines them, on the
reference and on every driver frame, and the crops and eye/lip ratios are taken on its
points, as the official pipeline does. The paste-back runs in torch on CUDA (the
generator output stays on the GPU until the final frame) and in numpy on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from mirage.models.avatar.liveportrait import crop as cropping
from mirage.models.avatar.liveportrait.loader import (
    load_networks,
    missing_weights,
    unavailable_reason,
)
from mirage.models.avatar.liveportrait.paste import PASTE_MODES, DevicePasteBack
from mirage.models.avatar.liveportrait.pipeline import (
    LivePortraitPipeline,
    MotionConfig,
    Networks,
    Source,
    StageTimer,
)
from mirage.models.avatar.passthrough import fit_square
from mirage.models.base import (
    BackendUnavailable,
    BadInput,
    FaceAnimator,
    NoFaceError,
    WeightsMissing,
)
from mirage.models.face import landmark203
from mirage.models.face.mesh import FaceMesh
from mirage.models.face.tracker import FaceTracker, Landmarker, TrackerConfig
from mirage.weights import models_dir as resolve_models_dir


def preferred(models_dir: str | None = None) -> bool:
    """Whether ``auto`` should pick this backend: weights present and a CUDA GPU."""
    return unavailable_reason(models_dir) is None and torch.cuda.is_available()


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(
            "liveportrait: device 'cuda' asked for, but no CUDA GPU is present"
        )
    if not device.startswith(("cuda", "cpu")):
        raise BadInput(f"liveportrait: unknown device {device!r}; use auto, cuda or cpu")
    return torch.device(device)


def output_window(
    height: int, width: int, face: cropping.FaceRect, frame_scale: float
) -> tuple[int, int, int]:
    """(x0, y0, side) of the reference square shown as the output, in whole pixels.

    Centred on the face and ``frame_scale`` × the source crop's side (head and shoulders
    at 1.5), clamped inside the image; ``frame_scale`` 0 takes the largest square.
    """
    side = min(height, width)
    if frame_scale > 0:
        side = min(side, max(16, round(face.size * frame_scale)))
    x0 = min(max(round(face.center[0] - side / 2), 0), width - side)
    y0 = min(max(round(face.center[1] - side / 2), 0), height - side)
    return int(x0), int(y0), int(side)


def window_matrix(x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """3×3 map from image pixels to the window resized to ``size`` (as ``cv2.resize`` maps)."""
    k = size / side
    half = 0.5 * (k - 1.0)  # cv2.resize aligns pixel centres, not corners
    return np.array([[k, 0.0, half - k * x0], [0.0, k, half - k * y0], [0.0, 0.0, 1.0]])


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise BadInput(
            f"{what} must be an RGB (H, W, 3) array, got {getattr(image, 'shape', None)}"
        )
    if image.dtype != np.uint8:
        raise BadInput(f"{what} must be uint8, got {image.dtype}")
    return np.ascontiguousarray(image)


@dataclass
class _Reference:
    image: np.ndarray
    source: Source
    crop_matrix: np.ndarray  # reference pixels → 512 crop (= generator output) pixels
    face: cropping.FaceRect  # the source crop's square


class LivePortraitAnimator(FaceAnimator):
    """LivePortrait as a ``FaceAnimator`` (one per session; not thread-safe).

    ``device``: auto | cuda | cpu. On CUDA it runs under fp16 autocast with channels_last
    (``half`` / ``channels_last`` override); ``compile`` wraps W and G in torch.compile,
    ``cuda_graphs`` replays them as CUDA graphs (ignored, logged, off CUDA; see ``accel``).
    ``paste``: auto (torch on CUDA, numpy on CPU) | torch | numpy.
    ``landmarks``: auto (the official 203-point model when its file is present, else
    MediaPipe's points) | lp203 (required: ``WeightsMissing`` without it) | mediapipe.
    ``frame_scale``: the output shows the reference square centred on the face, this many
    times the source crop's side (0 = the largest square). ``crop_smoothing``: weight of
    each new frame in the driving crop's running average (1 = no smoothing).
    ``neutral_min_score``: the driver's neutral pose is taken from the first frame whose
    face is at least this much inside the picture (until then the reference is held).
    ``profile`` syncs the device around stages so ``timings`` holds honest milliseconds.
    ``reference_landmarker`` finds the reference's face (default: a static MediaPipe mesh);
    with ``tracker`` it lets recorded landmarks stand in where MediaPipe is absent.
    """

    def __init__(
        self,
        models_dir: str | None = None,
        device: str = "auto",
        half: bool | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
        paste: str = "auto",
        landmarks: str = "auto",
        stitching: bool = True,
        eye_retargeting: bool = False,
        lip_retargeting: bool = False,
        driving_multiplier: float = 1.0,
        detect_every: int = 5,
        crop_smoothing: float = 0.5,
        frame_scale: float = 1.5,
        neutral_min_score: float = 0.9,
        detector: str = "auto",
        profile: bool = False,
        networks: Networks | None = None,
        tracker: FaceTracker | None = None,
        reference_landmarker: Landmarker | None = None,
    ) -> None:
        self.device = resolve_device(device)
        if not 0.0 < crop_smoothing <= 1.0:
            raise BadInput(f"crop_smoothing must be in (0, 1], got {crop_smoothing}")
        self.crop_smoothing = crop_smoothing
        if frame_scale < 0:
            raise BadInput(f"frame_scale must be ≥ 0, got {frame_scale}")
        self.frame_scale = frame_scale
        self.neutral_min_score = neutral_min_score
        self._rect: cropping.FaceRect | None = None
        self.reference_landmarker = reference_landmarker
        cuda = self.device.type == "cuda"
        if paste not in PASTE_MODES:
            raise BadInput(f"liveportrait: unknown paste {paste!r}; use {', '.join(PASTE_MODES)}")
        self.device_paste = paste == "torch" or (paste == "auto" and cuda)
        if landmarks not in ("auto", "lp203", "mediapipe"):
            raise BadInput(
                f"liveportrait: unknown landmarks {landmarks!r}; use auto, lp203 or mediapipe"
            )
        self.landmarks = (
            None
            if landmarks == "mediapipe"
            else landmark203.load_optional(
                models_dir, "auto" if cuda else "cpu", required=landmarks == "lp203"
            )
        )
        self.tracker = tracker or FaceTracker(
            TrackerConfig(detect_every=detect_every, detector=detector), models_dir=models_dir
        )
        if networks is None:
            root = resolve_models_dir(models_dir)
            missing = missing_weights(root)
            if missing:
                raise WeightsMissing(f"liveportrait: missing {missing[0]}")
            networks = load_networks(root, str(self.device))
        self.timer = StageTimer(enabled=profile, device=self.device)
        self.pipeline = LivePortraitPipeline(
            networks,
            self.device,
            half=cuda if half is None else half,
            channels_last=cuda if channels_last is None else channels_last,
            compile=compile,
            cuda_graphs=cuda_graphs,
            motion=MotionConfig(
                stitching=stitching,
                eye_retargeting=eye_retargeting,
                lip_retargeting=lip_retargeting,
                driving_multiplier=driving_multiplier,
            ),
            timer=self.timer,
        )
        self._reference: _Reference | None = None
        self._paste: dict[int, cropping.PasteBack | DevicePasteBack] = {}
        self._last: dict[int, np.ndarray] = {}

    @property
    def timings(self) -> dict[str, float]:
        """Milliseconds per stage of the last animated frame (filled when ``profile``)."""
        return dict(self.timer.last)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """``timings`` in seconds, the name the server's metrics read."""
        return {name: ms / 1000 for name, ms in self.timer.last.items()}

    def set_reference(self, image: np.ndarray) -> None:
        rgb = _check_rgb(image, "reference")
        if self.reference_landmarker is not None:
            face = self.reference_landmarker.detect(rgb)
        else:
            with FaceMesh(static=True) as mesh:
                face = mesh.detect(rgb)
        if face is None:
            raise NoFaceError("no face found in the reference portrait")
        points = self._refine(rgb, face.points)
        crop = cropping.crop_source(rgb, points)
        source = self.pipeline.prepare_source(
            crop.image, cropping.eye_ratios(points), cropping.lip_ratio(points)
        )
        face_rect = cropping.face_rect(points, cropping.SOURCE_CROP)
        self._reference = _Reference(rgb, source, crop.matrix, face_rect)
        self._paste.clear()
        self._last.clear()
        self.reset()

    def reset(self) -> None:
        self.pipeline.reset()
        self.tracker.reset()
        self._rect = None

    def _refine(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The official 203 points around MediaPipe's (the model's 224 crop of them); or
        MediaPipe's own points when the model is not loaded."""
        if self.landmarks is None:
            return points
        rect = cropping.face_rect(points, cropping.LANDMARK_CROP)
        size = cropping.LANDMARK_CROP.dsize
        return self.landmarks.run(rgb, cropping.crop_matrix(rect, size, rotate=True))

    def _driver_crop(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        config = cropping.DRIVER_CROP
        rect = cropping.face_rect(points, config)
        if self._rect is not None:
            rect = cropping.blend_rect(self._rect, rect, self.crop_smoothing)
        self._rect = rect
        matrix = cropping.crop_matrix(rect, config.dsize, config.rotate)
        return cropping.warp(rgb, matrix, config.dsize, config.dsize)

    def _paste_back(self, size: int) -> cropping.PasteBack | DevicePasteBack:
        paste = self._paste.get(size)
        if paste is None:
            assert self._reference is not None
            ref = self._reference
            h, w = ref.image.shape[:2]
            x0, y0, side = output_window(h, w, ref.face, self.frame_scale)
            to_output = window_matrix(x0, y0, side, size) @ np.linalg.inv(ref.crop_matrix)
            background = fit_square(ref.image[y0 : y0 + side, x0 : x0 + side], size)
            host = cropping.PasteBack(background, to_output, crop_size=512)
            paste = DevicePasteBack(host, self.device) if self.device_paste else host
            self._paste[size] = paste
        return paste

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        if self._reference is None:
            raise BadInput("liveportrait: set_reference must be called before animate")
        if size < 16:
            raise BadInput(f"output size must be at least 16, got {size}")
        rgb = _check_rgb(driver, "driver")
        timer = self.timer
        timer.last.clear()
        start = time.perf_counter()
        with timer.stage("track"):
            face = self.tracker.track(rgb)
        paste = self._paste_back(size)
        unsure = face is not None and face.score < self.neutral_min_score
        if face is None or (unsure and not self.pipeline.has_neutral):
            # no usable face: hold the last frame (or the still reference)
            self._rect = None
            return self._last.get(size, paste.background).copy()
        with timer.stage("landmarks"):
            points = self._refine(rgb, face.points)
        with timer.stage("crop"):
            crop = self._driver_crop(rgb, points)
            eyes = cropping.eye_ratios(points)
            lip = cropping.lip_ratio(points)
        source = self._reference.source
        if isinstance(paste, DevicePasteBack):  # the output stays on the device until here
            image = self.pipeline.animate_tensor(source, crop, eyes, lip)
            with timer.stage("paste"):
                out = paste.paste(image)
        else:
            generated = self.pipeline.animate(source, crop, eyes, lip)
            with timer.stage("paste"):
                out = paste.paste(generated)
        if timer.enabled:
            timer.last["total"] = (time.perf_counter() - start) * 1000.0
        self._last[size] = out
        return out

    def close(self) -> None:
        """Release the landmark graphs and cached frames; the animator is unusable afterwards."""
        self.tracker.close()
        self.landmarks = None
        self._reference = None
        self._paste.clear()
        self._last.clear()
