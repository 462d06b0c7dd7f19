"""LivePortrait's keypoint algebra: head-pose bins → degrees → rotation, the posed-keypoint
transform, the relative-motion rule, and how stitching / retargeting deltas are applied.

Posed keypoints follow Eq. 2 of the paper: ``x = s · (x_c R + δ) + t`` with row vectors
(hence ``x_c @ R``), where t only shifts x and y. All functions are batched, pure torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Head-pose bins: 66 bins of 3 degrees; the expectation is centred at -97.5 degrees.
POSE_BINS = 66
POSE_BIN_DEGREES = 3.0
POSE_OFFSET_DEGREES = 97.5


def headpose_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, 66) bin logits → (B, 1) degrees, the softmax expectation over bin indices."""
    idx = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device)
    expectation = (F.softmax(logits, dim=1) * idx).sum(dim=1, keepdim=True)
    return expectation * POSE_BIN_DEGREES - POSE_OFFSET_DEGREES


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Degrees (B, 1) or (B,) → (B, 3, 3) ``(Rz(roll) @ Ry(yaw) @ Rx(pitch))ᵀ``.

    Transposed because keypoints are row vectors, rotated as ``kp @ R``.
    """
    x, y, z = (a.reshape(-1) * (math.pi / 180.0) for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack(
        [one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], dim=1
    ).reshape(-1, 3, 3)
    rot_y = torch.stack(
        [y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], dim=1
    ).reshape(-1, 3, 3)
    rot_z = torch.stack(
        [z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], dim=1
    ).reshape(-1, 3, 3)
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


@dataclass(frozen=True)
class KeypointInfo:
    """The motion extractor's outputs for one image, refined: pose in degrees (B, 1),
    t (B, 3), exp and kp (B, K, 3), scale (B, 1), and the rotation R (B, 3, 3)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor
    rotation: torch.Tensor

    @classmethod
    def from_motion(cls, raw: dict[str, torch.Tensor]) -> KeypointInfo:
        """Refine the raw motion-extractor dict (``get_kp_info`` of the official wrapper)."""
        raw = {k: v.float() for k, v in raw.items()}  # the heads may have run under autocast
        b = raw["kp"].shape[0]
        pitch, yaw, roll = (headpose_to_degrees(raw[k]) for k in ("pitch", "yaw", "roll"))
        return cls(
            pitch=pitch,
            yaw=yaw,
            roll=roll,
            t=raw["t"],
            exp=raw["exp"].reshape(b, -1, 3),
            scale=raw["scale"],
            kp=raw["kp"].reshape(b, -1, 3),
            rotation=rotation_matrix(pitch, yaw, roll),
        )


def pose_keypoints(
    kp: torch.Tensor,
    rotation: torch.Tensor,
    exp: torch.Tensor,
    scale: torch.Tensor,
    t: torch.Tensor,
) -> torch.Tensor:
    """``scale · (kp @ R + exp) + (t_x, t_y, 0)``; kp/exp (B, K, 3), scale (B, 1), t (B, 3)."""
    x = (kp @ rotation + exp) * scale[:, :, None]
    shift = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    return x + shift[:, None, :]


def transform_keypoints(info: KeypointInfo) -> torch.Tensor:
    """The posed keypoints of one image (``transform_keypoint`` of the official wrapper)."""
    return pose_keypoints(info.kp, info.rotation, info.exp, info.scale, info.t)


def relative_keypoints(
    source: KeypointInfo, driving: KeypointInfo, driving_first: KeypointInfo
) -> torch.Tensor:
    """Driving keypoints in "relative motion" mode (animation region "all").

    The source's canonical keypoints are moved by the driver's change since its first
    frame: rotation ``R_d R_d0ᵀ R_s``, expression ``exp_s + exp_d − exp_d0``, scale
    ``s_s · s_d / s_d0`` and translation ``t_s + t_d − t_d0`` (z dropped). A driver still in
    its first pose therefore reproduces the source keypoints.
    """
    rotation = driving.rotation @ driving_first.rotation.transpose(1, 2) @ source.rotation
    exp = source.exp + (driving.exp - driving_first.exp)
    scale = source.scale * (driving.scale / driving_first.scale)
    t = source.t + (driving.t - driving_first.t)
    return pose_keypoints(source.kp, rotation, exp, scale, t)


def flatten_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, ...) and (B, ...) → (B, n_a + n_b): the retargeting MLPs' input layout."""
    return torch.cat([a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)], dim=1)


def apply_stitching(kp_driving: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Add the stitching MLP's output (B, 3K+2): per-keypoint offsets, then a shared xy shift."""
    b, k, _ = kp_driving.shape
    out = kp_driving + delta[:, : 3 * k].reshape(b, k, 3)
    shift = torch.cat([delta[:, 3 * k : 3 * k + 2], delta.new_zeros(b, 1)], dim=1)
    return out + shift[:, None, :]


def stitch(mlp: nn.Module, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """Driving keypoints corrected by the stitching MLP so the face fits the source's crop."""
    delta: torch.Tensor = mlp(flatten_pair(kp_source, kp_driving))
    return apply_stitching(kp_driving, delta)


def retarget(mlp: nn.Module, kp_source: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Eye or lip retargeting: (B, K, 3) keypoint delta for the wanted closure ``ratio``.

    Eyes: ratio (B, 3) = [source left, source right, driving eye ratio]; lips: (B, 2) =
    [source lip ratio, driving lip ratio]. Add the delta to the driving keypoints.
    """
    delta: torch.Tensor = mlp(flatten_pair(kp_source, ratio))
    return delta.reshape(kp_source.shape)


def scale_motion(kp_source: torch.Tensor, kp_driving: torch.Tensor, factor: float) -> torch.Tensor:
    """Exaggerate or damp the motion: ``x_s + (x_d − x_s) · factor`` (driving_multiplier)."""
    return kp_source + (kp_driving - kp_source) * factor
