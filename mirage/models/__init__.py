"""Model backends (no WebRTC here): face animators and voice converters, their protocols
and errors, and the registry that names them with their option schemas."""

from __future__ import annotations

from mirage.models.base import (
    BackendUnavailable,
    BadInput,
    FaceAnimator,
    MirageError,
    NoFaceError,
    UnknownBackend,
    VoiceConverter,
    WeightsMissing,
)
from mirage.models.registry import available, create_animator, create_converter

__all__ = [
    "BackendUnavailable",
    "BadInput",
    "FaceAnimator",
    "MirageError",
    "NoFaceError",
    "UnknownBackend",
    "VoiceConverter",
    "WeightsMissing",
    "available",
    "create_animator",
    "create_converter",
]
