"""A session's two models, made once from names and options by the same rules everywhere:
the server's sessions, the in-process relay for bots.

Blocking (a backend may load weights): call ``build_backends`` off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mirage.engine.guard import close_model
from mirage.engine.voicechain import split_options, voice_chain
from mirage.models import registry
from mirage.models.base import BadInput, FaceAnimator, VoiceConverter

#: Backends that read the weights folder (``models_dir`` is passed to them).
NEEDS_WEIGHTS = frozenset({"liveportrait", "rvc"})


@dataclass
class Backends:
    face: str
    voice: str
    animator: FaceAnimator
    converter: VoiceConverter
    # How to make each again (same options) when it keeps failing; None: never remade.
    make_animator: Callable[[], FaceAnimator] | None = None
    make_converter: Callable[[], VoiceConverter] | None = None
    reference: Any = None  # the portrait the animator was given (re-applied on a remake)


def with_models(name: str, models_dir: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus the weights folder for a backend that loads weights."""
    if name in NEEDS_WEIGHTS and models_dir is not None:
        return {"models_dir": models_dir, **options}
    return dict(options)


def build_backends(
    face: str,
    voice: str,
    face_options: dict[str, Any],
    voice_options: dict[str, Any],
    reference: np.ndarray,
    models_dir: str | None,
    voice_preset: str,
) -> Backends:
    """Both models, the animator already holding ``reference``. A dsp voice with no
    options gets ``voice_preset``; a bad option name or type is ``BadInput``. The voice
    comes behind its noise suppressor and gate (``mirage.engine.voicechain``)."""
    voice_options, denoise = split_options(voice, voice_options)
    if voice == "dsp" and not voice_options:
        voice_options = {"preset": voice_preset}

    def make_animator() -> FaceAnimator:
        return registry.create_animator(face, **with_models(face, models_dir, face_options))

    def make_converter() -> VoiceConverter:
        converter = registry.create_converter(
            voice, **with_models(voice, models_dir, voice_options)
        )
        return voice_chain(converter, denoise)

    try:
        animator = make_animator()
    except TypeError as exc:  # a bad option name or type reaches the constructor
        raise BadInput(f"bad backend option: {exc}") from None
    try:
        animator.set_reference(reference)
        converter = make_converter()
    except BaseException as exc:
        close_model(animator)  # it may hold weights or native graphs
        if isinstance(exc, TypeError):
            raise BadInput(f"bad backend option: {exc}") from None
        raise
    return Backends(face, voice, animator, converter, make_animator, make_converter, reference)


def face_check(face: str, models_dir: str | None, image: np.ndarray) -> None:
    """Whether ``face`` finds a face in ``image`` (``NoFaceError`` if not), with a
    model made for the check only and closed after it, from the same weights folder
    the sessions use. Blocking: call it off the event loop."""
    animator = registry.create_animator(face, **with_models(face, models_dir, {}))
    try:
        animator.set_reference(image)
    finally:
        close_model(animator)
