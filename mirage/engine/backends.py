"""The one backend lifecycle: resolve → make → supervise → close.

Every caller goes through it: the server's sessions, the in-process relay for
bots (``LocalRelay``), ``mirage render``, the portrait upload check and the
voice-timing probe.

- ``registry.resolve`` (by the table it reads; light, for ``mirage doctor`` too):
  a backend name (or ``auto``) → a ``Choice``: what is made here, with
  the reasons better ones were passed over and why an explicit one cannot run.
- ``make_face`` / ``make_voice`` / ``build_backends``: the models, from checked
  options and the process's ``BuildContext`` (weights folder, clock), the voice
  behind its noise suppressor and gate, each with the factory that remakes it.
- ``supervise`` / ``guard_animator`` / ``guard_converter``: each model behind a
  ``ModelGuard`` (deadline, fallback, restart; ``mirage.engine.guard``).
- ``close_backends`` / ``wait_backends_closed``: release them, bounded.

Blocking (a backend may load weights): make and wait off the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mirage.config import Settings
from mirage.engine.guard import close_model
from mirage.engine.supervised import SupervisedAnimator, SupervisedConverter
from mirage.engine.voicechain import split_options, voice_chain
from mirage.metrics import Metrics
from mirage.models import registry
from mirage.models.base import BadInput, FaceAnimator, Model, VoiceConverter
from mirage.models.registry import BuildContext

log = logging.getLogger(__name__)


# -- make ------------------------------------------------------------------------------


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


def with_preset(voice: str, options: dict[str, Any], preset: str) -> dict[str, Any]:
    """A dsp voice with no options of its own (``denoise`` is the chain's) gets
    ``preset``: what every session sounds like unless it asks otherwise."""
    if voice == "dsp" and not options.keys() - {"denoise"}:
        return {**options, "preset": preset}
    return dict(options)


def _bad_options(exc: TypeError) -> BadInput:
    return BadInput(f"bad backend option: {exc}")


def make_face(
    face: str, options: dict[str, Any], reference: np.ndarray | None, context: BuildContext
) -> tuple[FaceAnimator, Callable[[], FaceAnimator]]:
    """The animator, holding ``reference`` when given, and its factory. A bad option
    name or type is ``BadInput``; a portrait without a face ``NoFaceError``."""

    def make() -> FaceAnimator:
        return registry.create_animator(face, context, **options)

    try:
        animator = make()
    except TypeError as exc:  # a bad option name or type reaches the constructor
        raise _bad_options(exc) from None
    if reference is not None:
        try:
            animator.set_reference(reference)
        except BaseException:
            close_model(animator)  # it may hold weights or native graphs
            raise
    return animator, make


def make_voice(
    voice: str, options: dict[str, Any], context: BuildContext, preset: str
) -> tuple[VoiceConverter, Callable[[], VoiceConverter]]:
    """The converter behind its voice chain (``mirage.engine.voicechain``) and its
    factory; a bad option (``denoise`` included) is ``BadInput`` before any model."""
    own, denoise = split_options(voice, with_preset(voice, options, preset))

    def make() -> VoiceConverter:
        return voice_chain(registry.create_converter(voice, context, **own), denoise)

    try:
        return make(), make
    except TypeError as exc:
        raise _bad_options(exc) from None


def build_backends(
    face: str,
    voice: str,
    face_options: dict[str, Any],
    voice_options: dict[str, Any],
    reference: np.ndarray,
    context: BuildContext,
    voice_preset: str,
) -> Backends:
    """Both models, the animator already holding ``reference`` (closed again when the
    converter cannot be made)."""
    animator, make_animator = make_face(face, face_options, reference, context)
    try:
        converter, make_converter = make_voice(voice, voice_options, context, voice_preset)
    except BaseException:
        close_model(animator)
        raise
    return Backends(face, voice, animator, converter, make_animator, make_converter, reference)


def face_check(face: str, models_dir: str | None, image: np.ndarray) -> None:
    """Whether ``face`` finds a face in ``image`` (``NoFaceError`` if not), with a
    model made for the check only and closed after it, from the same weights folder
    the sessions use."""
    animator, _ = make_face(face, {}, image, BuildContext(models_dir))
    close_model(animator)


def probe_voice_timing(voice: str, context: BuildContext, preset: str) -> dict[str, float]:
    """Block length and algorithmic latency of ``voice`` as a session gets it (its
    chain's delay included), from a converter made for this and closed."""
    converter, _ = make_voice(voice, {}, context, preset)
    close_model(converter)
    block_s = converter.block_size / converter.sample_rate
    return {
        "sample_rate": converter.sample_rate,
        "block_ms": round(block_s * 1000, 1),
        "latency_s": round(converter.latency_s, 4),
        "total_delay_ms": round((block_s + converter.latency_s) * 1000, 1),
    }


# -- supervise -------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardPolicy:
    """The guard's deadline and restart threshold (``mirage.engine.guard``)."""

    timeout_s: float = Settings.model_timeout_s
    restart_after: int = Settings.model_restart_after

    @classmethod
    def of(cls, settings: Settings) -> GuardPolicy:
        return cls(settings.model_timeout_s, settings.model_restart_after)

    def options(
        self, track: str, backend: str, tag: str, metrics: Metrics | None
    ) -> dict[str, Any]:
        """The ``ModelGuard`` keyword arguments (its thread is ``mirage-model-{track}-{tag}``);
        ``metrics`` counts the timeouts and restarts under the track and backend."""
        on_timeout: Callable[[], None] | None = None
        on_restart: Callable[[], None] | None = None
        if metrics is not None:
            on_timeout = metrics.model_timeouts.labels(track, backend).inc
            on_restart = metrics.backend_restarts.labels(track, backend).inc
        return {
            "name": f"{track}-{tag}",
            "timeout_s": self.timeout_s,
            "restart_after": self.restart_after,
            "on_timeout": on_timeout,
            "on_restart": on_restart,
        }


def guard_animator(
    animator: FaceAnimator,
    make: Callable[[], FaceAnimator] | None,
    reference: np.ndarray | None,
    policy: GuardPolicy,
    face: str,
    tag: str,
    metrics: Metrics | None = None,
) -> SupervisedAnimator:
    """``animator`` behind a guard that remakes it with ``make`` (and re-applies
    ``reference``) when it keeps failing; one already guarded is returned as is."""
    if isinstance(animator, SupervisedAnimator):
        return animator
    return SupervisedAnimator(
        animator, make, reference, **policy.options("video", face, tag, metrics)
    )


def guard_converter(
    converter: VoiceConverter,
    make: Callable[[], VoiceConverter] | None,
    policy: GuardPolicy,
    voice: str,
    tag: str,
    metrics: Metrics | None = None,
) -> SupervisedConverter:
    """``converter`` behind a guard that remakes it with ``make`` (and re-applies its
    live settings); one already guarded is returned as is."""
    if isinstance(converter, SupervisedConverter):
        return converter
    return SupervisedConverter(converter, make, **policy.options("audio", voice, tag, metrics))


def supervise(b: Backends, policy: GuardPolicy, tag: str, metrics: Metrics | None = None) -> None:
    """Put each of ``b``'s models behind its guard (idempotent)."""
    b.animator = guard_animator(
        b.animator, b.make_animator, b.reference, policy, b.face, tag, metrics
    )
    b.converter = guard_converter(b.converter, b.make_converter, policy, b.voice, tag, metrics)


# -- close -----------------------------------------------------------------------------


def close_backends(models: Iterable[Model]) -> None:
    """Close each model; never blocks for a guarded one (its guard closes it on the
    model's own thread, and wakes a worker waiting on a hung call)."""
    for model in models:
        try:
            model.close()
        except Exception:  # pragma: no cover - best effort on the way out
            log.exception("closing a model failed")


def wait_backends_closed(models: Iterable[Model], timeout: float = 5.0) -> bool:
    """Block (off the event loop) until the models' threads have released them, at
    most ``timeout`` in all; False when one is still busy (a hung call keeps it)."""
    deadline = time.monotonic() + timeout
    done = True
    for model in models:
        done = model.wait_closed(max(0.0, deadline - time.monotonic())) and done
    return done
