"""The feathered paste-back on the device, so the generator's output stays on the GPU.

``crop.PasteBack`` works on host images: on CUDA the 512² generator output would be read
back (≈0.8 MB), warped and blended on the CPU. ``DevicePasteBack`` does the same warp with
``grid_sample`` and the same blend in torch, and only the final uint8 frame crosses to the
host. Its window and feathered mask are the host ``PasteBack``'s own (same cv2 warp, then
uploaded), so which pixels are the reference's untouched is exactly the same; inside the
mask the two differ only by interpolation rounding (cv2 quantises to 1/32 pixel).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mirage.models.avatar.liveportrait.crop import PasteBack

#: Values of ``paste``: where the paste-back runs (``auto``: torch on CUDA, numpy on CPU).
PASTE_MODES = ("auto", "torch", "numpy")


def sampling_grid(to_window: np.ndarray, height: int, width: int, crop_size: int) -> torch.Tensor:
    """(1, height, width, 2) ``grid_sample`` grid: where each window pixel reads the crop.

    ``to_window`` maps crop pixels to window pixels (as ``cv2.warpAffine``'s matrix); its
    inverse gives the crop pixel of each window pixel centre, normalised for
    ``align_corners=False`` (pixel centres at (2i + 1) / size - 1).
    """
    back = np.linalg.inv(np.asarray(to_window, dtype=np.float64))
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    sx = back[0, 0] * xs + back[0, 1] * ys + back[0, 2]
    sy = back[1, 0] * xs + back[1, 1] * ys + back[1, 2]
    grid = np.stack([(2 * sx + 1) / crop_size - 1, (2 * sy + 1) / crop_size - 1], axis=-1)
    return torch.from_numpy(grid[None].astype(np.float32))


class DevicePasteBack:
    """``PasteBack`` for generator output tensors, computed on their device.

    Same geometry attributes (``background``, ``window``, ``mask``: host arrays) so the
    animator holds frames and tests inspect it the same way; ``paste`` takes the
    generator's (1, 3, crop, crop) image in [0, 1] and returns the RGB uint8 frame.
    """

    def __init__(self, host: PasteBack, device: torch.device, crop_size: int = 512) -> None:
        self.host = host
        self.background = host.background
        self.window = host.window
        self.mask = host.mask
        self.crop_size = crop_size
        self.device = device
        self._background = torch.from_numpy(host.background).to(device)
        y0, y1, x0, x1 = host.window
        if y1 <= y0:
            self._grid = self._mask = None
            return
        self._mask = torch.from_numpy(np.ascontiguousarray(host.mask)).to(device)
        self._grid = sampling_grid(host._to_window, y1 - y0, x1 - x0, crop_size).to(device)

    @torch.inference_mode()
    def paste(self, image: torch.Tensor) -> np.ndarray:
        """The background with ``image`` blended in, as one host RGB uint8 array."""
        if image.shape[-2:] != (self.crop_size, self.crop_size):
            raise ValueError(f"expected a {self.crop_size}² image, got {tuple(image.shape)}")
        if self._grid is None or self._mask is None:
            return self.background.copy()
        # the crop is truncated to uint8 first, as the host path's readback does
        crop = (image[:1].float().clamp(0, 1) * 255.0).to(torch.uint8).float()
        face = F.grid_sample(
            crop, self._grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        face = face[0].permute(1, 2, 0)
        y0, y1, x0, x1 = self.window
        out = self._background.clone()
        base = out[y0:y1, x0:x1].float()
        blended = base + self._mask * (face - base)
        out[y0:y1, x0:x1] = (blended + 0.5).clamp_(0, 255).to(torch.uint8)
        return out.cpu().numpy()
