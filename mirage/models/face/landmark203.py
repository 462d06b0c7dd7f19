"""LivePortrait's own 203-point face landmark model (``liveportrait/landmark.onnx``) on onnxruntime.

Facts of the official runner (``src/utils/landmark_runner.py``), our code: the face is cut
to a 224×224 square around a coarse set of landmarks by LivePortrait's crop rule (scale
1.5, vy -0.1, roll undone), fed as RGB float32 in [0, 1], NCHW, to the input ``input``;
the third output holds the 203 points as ``(1, 406)`` x, y pairs normalised to the crop,
so ×224 gives crop pixels, which the inverse crop matrix maps back to the image.

Which of the 203 points mean what (eyes, lips, the crop axis) lives with the crop rule in
``mirage.models.avatar.liveportrait.crop`` (``LP203``); this module only runs the model.
The file is optional: without it LivePortrait crops and measures on MediaPipe's points.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mirage.models.checkpoint import BadCheckpoint
from mirage.models.base import BackendUnavailable, BadInput, WeightsMissing
from mirage.weights import models_dir as resolve_models_dir

log = logging.getLogger(__name__)

#: Where the official release keeps the model, relative to the weights folder.
LANDMARK_FILE = "liveportrait/landmark.onnx"
NUM_POINTS = 203
INPUT_SIZE = 224
#: Index of the output that holds the points (the official runner reads ``out[2]``).
POINTS_OUTPUT = 2


def find_weights(models_dir: str | Path | None = None) -> Path | None:
    """``liveportrait/landmark.onnx`` in the weights folder, or ``None``."""
    path = resolve_models_dir(models_dir) / LANDMARK_FILE
    return path if path.is_file() else None


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if device not in ("auto", "cuda", "cpu"):
        raise BadInput(f"landmark203: unknown device {device!r}; use auto, cuda or cpu")
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise BackendUnavailable("landmark203: onnxruntime has no CUDAExecutionProvider here")
    return ["CPUExecutionProvider"]


class Landmark203:
    """The official 203-point landmark model over one onnxruntime session (one per worker).

    ``run(rgb, to_crop)`` takes the 3×3 matrix that maps image pixels into the 224 crop
    (``crop.crop_matrix`` of ``crop.LANDMARK_CROP``) and returns (203, 2) image pixels.
    A file that onnxruntime cannot load, or whose inputs/outputs are not the landmark
    model's, raises ``BadCheckpoint`` naming it.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        models_dir: str | Path | None = None,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        path = Path(model_path) if model_path else find_weights(models_dir)
        if path is None or not path.is_file():
            missing = path or resolve_models_dir(models_dir) / LANDMARK_FILE
            raise WeightsMissing(f"LivePortrait landmark model missing: {missing}")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"landmark203 needs onnxruntime: {exc}") from exc
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = _providers(device)
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises several types for a damaged file
            raise BadCheckpoint(f"cannot load the landmark model {path}: {exc}") from exc
        self.path = path
        self._input_name, self._output_name = self._check_signature()

    def _check_signature(self) -> tuple[str, str]:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        where = f"landmark model {self.path}"
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [i.shape for i in inputs]
            raise BadCheckpoint(f"{where}: expected one NCHW image input, found {shapes}")
        channels = inputs[0].shape[1]
        if isinstance(channels, int) and channels != 3:
            raise BadCheckpoint(f"{where}: input has {channels} channels, expected 3 (RGB)")
        if len(outputs) <= POINTS_OUTPUT:
            raise BadCheckpoint(
                f"{where}: expected at least {POINTS_OUTPUT + 1} outputs (the points are "
                f"output {POINTS_OUTPUT}), found {len(outputs)}"
            )
        size = _static_size(outputs[POINTS_OUTPUT].shape)
        if size is not None and size != 2 * NUM_POINTS:
            raise BadCheckpoint(
                f"{where}: output {POINTS_OUTPUT} has {size} values, expected "
                f"{2 * NUM_POINTS} ({NUM_POINTS} x, y pairs)"
            )
        return inputs[0].name, outputs[POINTS_OUTPUT].name

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def preprocess(self, rgb: np.ndarray, to_crop: np.ndarray) -> np.ndarray:
        """The (1, 3, 224, 224) float32 blob in [0, 1] of the crop ``to_crop`` selects."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInput(f"landmark203 needs an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
        m = np.asarray(to_crop, dtype=np.float64)
        if m.shape != (3, 3):
            raise BadInput(f"landmark203: crop matrix must be 3x3, got {m.shape}")
        crop = cv2.warpAffine(
            rgb,
            m[:2],
            (INPUT_SIZE, INPUT_SIZE),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        blob = crop.astype(np.float32) / 255.0
        return np.ascontiguousarray(blob.transpose(2, 0, 1)[None])

    def run(self, rgb: np.ndarray, to_crop: np.ndarray) -> np.ndarray:
        """(203, 2) float32 landmarks in image pixels."""
        blob = self.preprocess(rgb, to_crop)
        (raw,) = self._session.run([self._output_name], {self._input_name: blob})
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
        if values.size != 2 * NUM_POINTS:
            raise BadCheckpoint(
                f"landmark model {self.path}: output {POINTS_OUTPUT} gave {values.size} "
                f"values, expected {2 * NUM_POINTS}"
            )
        in_crop = values.reshape(NUM_POINTS, 2) * INPUT_SIZE
        back = np.linalg.inv(np.asarray(to_crop, dtype=np.float64))
        points = in_crop @ back[:2, :2].T + back[:2, 2]
        return points.astype(np.float32)


def _static_size(shape: list[Any]) -> int | None:
    """Number of values in an output of ``shape`` when every dimension is known."""
    if not all(isinstance(d, int) for d in shape):
        return None
    return int(np.prod(shape)) if shape else 1


def load_optional(
    models_dir: str | Path | None = None, device: str = "auto", required: bool = False
) -> Landmark203 | None:
    """The model when its file is present; ``None`` with a logged note when it is not.

    ``required`` turns the missing file into ``WeightsMissing``. A present but unusable
    file is always an error (``BadCheckpoint``): a silent fallback would hide it.
    """
    if find_weights(models_dir) is None:
        if required:
            raise WeightsMissing(
                f"LivePortrait landmark model missing: {resolve_models_dir(models_dir) / LANDMARK_FILE}"
            )
        log.info(
            "liveportrait: %s not found; cropping on MediaPipe landmarks",
            resolve_models_dir(models_dir) / LANDMARK_FILE,
        )
        return None
    try:
        return Landmark203(models_dir=models_dir, device=device)
    except BackendUnavailable as exc:
        if required:
            raise
        log.info("liveportrait: landmark model not used: %s", exc)
        return None
