"""SCRFD face detector (insightface's ``det_10g.onnx``) on onnxruntime, written for Mirage.

Only the weights come from insightface; preprocessing, anchor decoding and NMS are ours,
so the ``insightface`` package is an optional extra, never a requirement.

License: insightface's pretrained detection weights (the ``buffalo_l`` pack that holds
``det_10g.onnx``) are published for **non-commercial research purposes only**.

Where the file lives (first match wins), inside the weights folder:

* ``insightface/models/buffalo_l/det_10g.onnx`` — the official package layout
  (``<root>/models/<pack>/``) that LivePortrait's ``pretrained_weights/insightface`` also uses;
* ``insightface/buffalo_l/det_10g.onnx`` — the same pack without the ``models/`` level;
* ``insightface/det_10g.onnx``.

Model contract (det_10g): input ``(1, 3, H, W)`` float32, RGB, ``(x - 127.5) / 128``; nine
outputs, ordered scores(8, 16, 32), boxes(8, 16, 32), keypoints(8, 16, 32), each of
``(H/s · W/s · 2, k)`` rows (k = 1, 4, 10; an optional leading batch axis of 1). Scores are
already sigmoid probabilities; boxes are distances (left, top, right, bottom) and keypoints
offsets from the anchor centre, both in units of the stride. Each grid cell carries two
anchors with the same centre, stored consecutively, rows in raster order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mirage.models.base import BackendUnavailable, BadInput, WeightsMissing
from mirage.models.checkpoint import BadCheckpoint
from mirage.weights import models_dir as resolve_models_dir

#: Candidate locations of det_10g.onnx relative to the weights folder, in search order.
SCRFD_CANDIDATES: tuple[str, ...] = (
    "insightface/models/buffalo_l/det_10g.onnx",
    "insightface/buffalo_l/det_10g.onnx",
    "insightface/det_10g.onnx",
)
STRIDES: tuple[int, ...] = (8, 16, 32)
ANCHORS_PER_CELL = 2
LICENSE_NOTE = (
    "insightface detection weights (det_10g.onnx) are licensed for non-commercial use only"
)


def find_weights(models_dir: str | Path | None = None) -> Path | None:
    """The first existing det_10g.onnx under the weights folder, or ``None``."""
    root = resolve_models_dir(models_dir)
    for rel in SCRFD_CANDIDATES:
        path = root / rel
        if path.is_file():
            return path
    return None


def unavailable_reason(models_dir: str | None = None) -> str | None:
    """Why SCRFD cannot run here (package or weight file missing), else ``None``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    if find_weights(models_dir) is None:
        root = resolve_models_dir(models_dir)
        return f"missing {root / SCRFD_CANDIDATES[0]} ({LICENSE_NOTE})"
    return None


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1) and five keypoints (eyes, nose, mouth corners), in pixels."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray  # (5, 2) float32

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input: scaled by ``scale``, padded right/bottom."""

    scale: float
    width: int
    height: int


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio into the top-left of a black ``size`` (w, h) canvas."""
    in_w, in_h = size
    h, w = image.shape[:2]
    if h / w > in_h / in_w:
        new_h = in_h
        new_w = max(1, int(new_h * w / h))
    else:
        new_w = in_w
        new_h = max(1, int(new_w * h / w))
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, Letterbox(scale=new_h / h, width=new_w, height=new_h)


def anchor_centers(height: int, width: int, stride: int) -> np.ndarray:
    """(height·width·2, 2) anchor centres (x, y) in input pixels, two per cell, raster order."""
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, ANCHORS_PER_CELL, axis=0)


def decode_level(
    centers: np.ndarray,
    scores: np.ndarray,
    distances: np.ndarray,
    offsets: np.ndarray,
    stride: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of one stride above ``threshold`` → (scores (n,), boxes (n, 4), keypoints (n, 5, 2))."""
    scores = scores.reshape(-1)
    keep = np.nonzero(scores >= threshold)[0]
    c = centers[keep]
    d = distances.reshape(-1, 4)[keep] * stride
    boxes = np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1)
    kps = offsets.reshape(-1, 5, 2)[keep] * stride + c[:, None, :]
    return scores[keep], boxes.astype(np.float32), kps.astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    x0, y0, x1, y1 = boxes.T
    areas = np.maximum(0.0, x1 - x0) * np.maximum(0.0, y1 - y0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise BackendUnavailable("SCRFD: onnxruntime has no CUDAExecutionProvider here")
    return ["CPUExecutionProvider"]


@dataclass
class ScrfdConfig:
    """Detector settings. insightface defaults: 640×640 input, score ≥ 0.5, NMS IoU 0.4."""

    input_size: tuple[int, int] = (640, 640)  # (width, height), multiples of 32; a model
    # exported with a fixed input size uses its own
    score_threshold: float = 0.5
    nms_threshold: float = 0.4
    device: str = "auto"  # auto | cuda | cpu
    threads: int = 0  # onnxruntime intra-op threads; 0 = its default
    extra_session_options: dict[str, Any] = field(default_factory=dict)


class Scrfd:
    """SCRFD detector over one onnxruntime session (not thread-safe; one per worker)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        models_dir: str | None = None,
        config: ScrfdConfig | None = None,
    ) -> None:
        self.config = config or ScrfdConfig()
        w, h = self.config.input_size
        if w % 32 or h % 32:
            raise BadInput(f"SCRFD input size must be a multiple of 32, got {w}x{h}")
        path = Path(model_path) if model_path else find_weights(models_dir)
        if path is None or not path.is_file():
            missing = path or resolve_models_dir(models_dir) / SCRFD_CANDIDATES[0]
            raise WeightsMissing(f"SCRFD weights missing: {missing} ({LICENSE_NOTE})")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"SCRFD needs onnxruntime: {exc}") from exc
        options = ort.SessionOptions()
        if self.config.threads:
            options.intra_op_num_threads = self.config.threads
        for key, value in self.config.extra_session_options.items():
            setattr(options, key, value)
        providers = _providers(self.config.device)
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime's own types for a damaged file
            raise BadCheckpoint(f"cannot load the SCRFD model {path}: {exc}") from exc
        outputs = self._session.get_outputs()
        if len(outputs) != 3 * len(STRIDES):
            raise BadCheckpoint(
                f"{path}: expected {3 * len(STRIDES)} outputs (scores, boxes, keypoints "
                f"for strides {STRIDES}), found {len(outputs)}"
            )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        fixed = model_input.shape[2:4]
        if len(fixed) == 2 and all(isinstance(d, int) for d in fixed):
            h, w = int(fixed[0]), int(fixed[1])  # a fixed-size export wins over the config
        self.input_size = (w, h)
        self._output_names = [o.name for o in outputs]
        self._centers = {s: anchor_centers(h // s, w // s, s) for s in STRIDES}

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """RGB uint8 image → normalised NCHW blob and the letterbox used."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInput(f"SCRFD needs an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
        canvas, box = letterbox(rgb, self.input_size)
        blob = (canvas.astype(np.float32) - 127.5) / 128.0
        return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), box

    def decode(self, outputs: Sequence[np.ndarray], fit: Letterbox) -> list[Detection]:
        """Raw network outputs → detections in original image pixels, best first."""
        n = len(STRIDES)
        all_scores, all_boxes, all_kps = [], [], []
        for i, stride in enumerate(STRIDES):
            s, b, k = decode_level(
                self._centers[stride],
                np.asarray(outputs[i]),
                np.asarray(outputs[i + n]),
                np.asarray(outputs[i + 2 * n]),
                stride,
                self.config.score_threshold,
            )
            all_scores.append(s)
            all_boxes.append(b)
            all_kps.append(k)
        scores = np.concatenate(all_scores)
        if scores.size == 0:
            return []
        boxes = np.concatenate(all_boxes) / fit.scale
        kps = np.concatenate(all_kps) / fit.scale
        keep = nms(boxes, scores, self.config.nms_threshold)
        return [
            Detection(
                box=(
                    float(boxes[i, 0]),
                    float(boxes[i, 1]),
                    float(boxes[i, 2]),
                    float(boxes[i, 3]),
                ),
                score=float(scores[i]),
                keypoints=kps[i],
            )
            for i in keep
        ]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in an RGB uint8 image, best score first."""
        blob, fit = self.preprocess(rgb)
        outputs = self._session.run(self._output_names, {self._input_name: blob})
        return self.decode(outputs, fit)

    def largest(self, rgb: np.ndarray) -> Detection | None:
        """The largest face, or ``None``."""
        faces = self.detect(rgb)
        return max(faces, key=lambda d: d.area) if faces else None
