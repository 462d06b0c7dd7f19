"""The backend registry: names → lazily imported factories.

The table is an immutable tuple so it is not global mutable state; factories are
import paths so that ``torch`` and ``mediapipe`` load only when a backend that
needs them is made.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from mirage.models.base import FaceAnimator, UnknownBackend, VoiceConverter

Kind = Literal["face", "voice"]


@dataclass(frozen=True)
class Backend:
    """One registered backend.

    ``factory`` and ``check`` are ``"module:attribute"`` paths. ``check`` names a
    function ``(models_dir: str | None) -> str | None`` that returns why the
    backend cannot run here (missing package, weights or device), or ``None``.
    """

    name: str
    kind: Kind
    factory: str
    description: str
    check: str | None = None
    hidden: bool = False  # test backends: made on request, not listed to users


BACKENDS: tuple[Backend, ...] = (
    Backend(
        "passthrough",
        "face",
        "mirage.models.avatar.passthrough:PassthroughAnimator",
        "the camera image, unchanged (resized)",
    ),
    Backend(
        "warp",
        "face",
        "mirage.models.avatar.warp:WarpAnimator",
        "landmark-driven mesh warp of the reference; CPU, no weights",
        check="mirage.models.avatar.warp:unavailable_reason",
    ),
    Backend(
        "liveportrait",
        "face",
        "mirage.models.avatar.liveportrait:LivePortraitAnimator",
        "LivePortrait neural animation; needs its weights, best on a GPU",
        check="mirage.models.avatar.liveportrait.loader:unavailable_reason",
    ),
    Backend(
        "passthrough",
        "voice",
        "mirage.models.voice.passthrough:PassthroughConverter",
        "the microphone, unchanged",
    ),
    Backend(
        "dsp",
        "voice",
        "mirage.models.voice.dsp:DspConverter",
        "pitch and formant shift; CPU, no weights",
        check="mirage.models.voice.dsp:unavailable_reason",
    ),
    Backend(
        "rvc",
        "voice",
        "mirage.models.voice.rvc:RvcConverter",
        "RVC v1/v2 voice conversion; needs its weights",
        check="mirage.models.voice.rvc.files:unavailable_reason",
    ),
    # Test backends: fault injection for the engine's failure contracts.
    Backend(
        "invert",
        "face",
        "mirage.models.testing:InvertAnimator",
        "colour-inverted camera image",
        hidden=True,
    ),
    Backend(
        "slow",
        "face",
        "mirage.models.testing:SlowAnimator",
        "pass-through after a configurable delay",
        hidden=True,
    ),
    Backend(
        "failing",
        "face",
        "mirage.models.testing:FailingAnimator",
        "raises on every Nth frame",
        hidden=True,
    ),
    Backend(
        "hang",
        "face",
        "mirage.models.testing:HangAnimator",
        "hangs once after N frames",
        hidden=True,
    ),
    Backend(
        "hang",
        "voice",
        "mirage.models.testing:HangConverter",
        "hangs once after N blocks",
        hidden=True,
    ),
    Backend(
        "slow",
        "voice",
        "mirage.models.testing:SlowConverter",
        "pass-through after a configurable delay",
        hidden=True,
    ),
    Backend(
        "failing",
        "voice",
        "mirage.models.testing:FailingConverter",
        "raises on every Nth block",
        hidden=True,
    ),
    Backend(
        "delay",
        "voice",
        "mirage.models.testing:DelayConverter",
        "pass-through delayed by delay_ms",
        hidden=True,
    ),
)


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def find(kind: Kind, name: str) -> Backend:
    for backend in BACKENDS:
        if backend.kind == kind and backend.name == name:
            return backend
    known = ", ".join(b.name for b in BACKENDS if b.kind == kind and not b.hidden)
    raise UnknownBackend(f"unknown {kind} backend {name!r}; known: {known}")


def unavailable_reason(backend: Backend, models_dir: str | None = None) -> str | None:
    """Why ``backend`` cannot run here, or ``None`` when it can."""
    if backend.check is None:
        return None
    try:
        check: Callable[[str | None], str | None] = _resolve(backend.check)
    except ImportError as exc:  # the backend's module or one of its packages is absent
        return f"cannot import {backend.check.split(':')[0]}: {exc}"
    return check(models_dir)


def available(kind: Kind, models_dir: str | None = None) -> dict[str, str | None]:
    """Every user-facing backend of ``kind`` → ``None`` if it runs here, else why not."""
    return {
        b.name: unavailable_reason(b, models_dir)
        for b in BACKENDS
        if b.kind == kind and not b.hidden
    }


# ``auto``: the first of these whose packages and weights are here ("gpu": and a CUDA GPU,
# since these models are far from real time on a CPU).
AUTO_ORDER: dict[str, tuple[tuple[str, bool], ...]] = {
    "face": (("liveportrait", True), ("warp", False), ("passthrough", False)),
    "voice": (("rvc", True), ("dsp", False), ("passthrough", False)),
}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_auto(kind: Kind, models_dir: str | None = None) -> tuple[str, list[str]]:
    """The backend ``auto`` means here, and why each better one was passed over."""
    passed: list[str] = []
    for name, needs_gpu in AUTO_ORDER[kind]:
        reason = unavailable_reason(find(kind, name), models_dir)
        if reason is None and needs_gpu and not _cuda_available():
            reason = "no CUDA GPU (too slow for real time on a CPU)"
        if reason is None:
            return name, passed
        passed.append(f"{name}: {reason}")
    return "passthrough", passed


def create(kind: Kind, name: str, **options: Any) -> Any:
    backend = find(kind, name)
    factory = _resolve(backend.factory)
    return factory(**options)


def create_animator(name: str, **options: Any) -> FaceAnimator:
    """Make the face backend ``name``; options are the backend's keyword arguments."""
    animator: FaceAnimator = create("face", name, **options)
    return animator


def create_converter(name: str, **options: Any) -> VoiceConverter:
    """Make the voice backend ``name``; options are the backend's keyword arguments."""
    converter: VoiceConverter = create("voice", name, **options)
    return converter
