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

from mirage.models.base import (
    BackendUnavailable,
    BadInput,
    FaceAnimator,
    MirageError,
    UnknownBackend,
    VoiceConverter,
)
from mirage.models.options import Option, check_options, describe
from mirage.models.voice.presets import FLAT_HZ_RANGE, FORMANT_RANGE, PRESETS, SEMITONE_RANGE

Kind = Literal["face", "voice"]


@dataclass(frozen=True)
class Backend:
    """One registered backend.

    ``factory`` and ``check`` are ``"module:attribute"`` paths. ``check`` names a
    function ``(models_dir: str | None) -> str | None`` that returns why the
    backend cannot run here (missing package, weights or device), or ``None``.
    ``options`` is everything a client may set (mirage/models/options.py); a
    ``testing`` backend (fault injection) exists only where the process turned on
    the test-only switch (``Settings.test_backends``). ``weights`` and ``clock`` say
    which parts of the ``BuildContext`` the factory takes (keyword ``models_dir``,
    ``clock``): declared here, so no caller inspects a factory's signature.
    """

    name: str
    kind: Kind
    factory: str
    description: str
    check: str | None = None
    testing: bool = False
    options: tuple[Option, ...] = ()
    weights: bool = False
    clock: bool = False


@dataclass(frozen=True)
class BuildContext:
    """What the process, not the client, gives a backend it makes: the weights folder
    and (offline) the clock that times smoothing (None: the backend's own, wall time)."""

    models_dir: str | None = None
    clock: Callable[[], float] | None = None


# -- option schemas: what a client may set (checked by ``validate`` before a backend is made)

_DEVICES = ("auto", "cpu", "cuda")

WARP_OPTIONS = (
    Option("grid", "choice", 2, choices=(1, 2, 4, 8)),
    Option("landmark_side", "int", 512, 64, 2048),
    Option("neutral_frames", "int", 3, 1, 100),
    Option("min_score", "float", 0.8, 0.0, 1.0),
    Option("hold_s", "float", 0.4, 0.0, 10.0),
    Option("ease_s", "float", 0.6, 0.01, 10.0),  # divides: never 0
    Option("ramp_s", "float", 0.25, 0.01, 10.0),  # divides: never 0
    Option("face_scale", "float", 3.2, 1.0, 10.0),
    Option("eye_closed_at", "float", 0.25, 0.0, 1.0),
    Option("gaze_gain", "float", 1.4, 0.0, 3.0),
    Option("lid_gain", "float", 1.8, 0.5, 2.5),
    Option("brow_gain", "float", 2.0, 0.0, 4.0),
    Option("max_depth", "float", 0.8, 0.2, 3.0),
    Option("idle", "float", 1.0, 0.0, 2.0),
)
# compile, cuda_graphs and profile are Python-only: a compile can hold a thread for minutes.
LIVEPORTRAIT_OPTIONS = (
    Option("device", "choice", "auto", choices=_DEVICES),
    Option("half", "bool", None, nullable=True),
    Option("channels_last", "bool", None, nullable=True),
    Option("paste", "choice", "auto", choices=("auto", "torch", "numpy")),
    Option("landmarks", "choice", "auto", choices=("auto", "lp203", "mediapipe")),
    Option("detector", "choice", "auto", choices=("auto", "scrfd", "mesh")),
    Option("stitching", "bool", True),
    Option("eye_retargeting", "bool", False),
    Option("lip_retargeting", "bool", False),
    Option("driving_multiplier", "float", 1.0, 0.0, 3.0),
    Option("detect_every", "int", 5, 1, 1000),
    Option("crop_smoothing", "float", 0.5, 0.01, 1.0),
    Option("frame_scale", "float", 1.5, 0.0, 4.0),
    Option("neutral_min_score", "float", 0.9, 0.0, 1.0),
)
PASSTHROUGH_VOICE_OPTIONS = (
    Option("sample_rate", "choice", 48000, choices=(16000, 24000, 32000, 48000)),
    Option("block_ms", "float", 20.0, 10.0, 200.0),
)
# None: the preset's value. block_ms as dsp.BLOCK_MS_RANGE (not imported: dsp loads
# pyworld); tests/test_options.py fails when the two drift apart.
DSP_OPTIONS = (
    Option(
        "preset", "choice", None, choices=tuple(p.name for p in PRESETS), nullable=True, live=True
    ),
    Option("semitones", "float", None, *SEMITONE_RANGE, nullable=True, live=True),
    Option("formant", "float", None, *FORMANT_RANGE, nullable=True, live=True),
    Option("flat_hz", "float", None, *FLAT_HZ_RANGE, nullable=True, live=True, off=0),
    Option("whisper", "bool", None, nullable=True, live=True),
    Option("block_ms", "float", 10.0, 5.0, 200.0),  # and a multiple of 5 ms (dsp says so)
)
RVC_OPTIONS = (
    Option("model", "file", "rvc/model.pth"),
    Option("semitones", "float", 0.0, -24.0, 24.0),
    Option("index_rate", "float", 0.5, 0.0, 1.0),
    Option("block_ms", "float", 100.0, 20.0, 1000.0),
    Option("context_s", "float", 1.0, 0.04, 5.0),
    Option("crossfade_ms", "float", 40.0, 10.0, 1000.0),
    Option("search_ms", "float", 10.0, 0.0, 100.0),
    Option("device", "choice", "auto", choices=_DEVICES),
    Option("noise_scale", "float", 0.66666, 0.0, 2.0),
    Option("nsf_noise_scale", "float", 1.0, 0.0, 2.0),
    Option("rms_mix_rate", "float", 0.0, 0.0, 1.0),
    Option("speaker", "int", 0, 0, 1000),
    Option("pitch", "choice", "auto", choices=("auto", "rmvpe", "dio")),
)
# Fault injection (test-only): bounded too, so even a test server cannot be parked.
SLOW_FACE_OPTIONS = (Option("delay_ms", "float", 100.0, 0.0, 5000.0),)
SLOW_VOICE_OPTIONS = (Option("delay_ms", "float", 40.0, 0.0, 5000.0),)
EVERY_OPTIONS = (Option("every", "int", 1, 1, 1000),)
HANG_FACE_OPTIONS = (
    Option("after", "int", 20, 0, 100000),
    Option("hang_s", "float", 3600.0, 0.0, 3600.0),
)
HANG_VOICE_OPTIONS = (
    Option("after", "int", 50, 0, 100000),
    Option("hang_s", "float", 3600.0, 0.0, 3600.0),
)
DELAY_OPTIONS = (Option("delay_ms", "float", 150.0, 0.0, 2000.0),)


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
        "mirage.models.avatar.warp.animator:WarpAnimator",
        "landmark-driven mesh warp of the reference; CPU, no weights",
        check="mirage.models.avatar.warp:unavailable_reason",
        options=WARP_OPTIONS,
        clock=True,
    ),
    Backend(
        "liveportrait",
        "face",
        "mirage.models.avatar.liveportrait.animator:LivePortraitAnimator",
        "LivePortrait neural animation; needs its weights, best on a GPU",
        check="mirage.models.avatar.liveportrait.loader:unavailable_reason",
        options=LIVEPORTRAIT_OPTIONS,
        weights=True,
    ),
    Backend(
        "passthrough",
        "voice",
        "mirage.models.voice.passthrough:PassthroughConverter",
        "the microphone, unchanged",
        options=PASSTHROUGH_VOICE_OPTIONS,
    ),
    Backend(
        "dsp",
        "voice",
        "mirage.models.voice.dsp:DspConverter",
        "pitch and formant shift; CPU, no weights",
        check="mirage.models.voice.dsp:unavailable_reason",
        options=DSP_OPTIONS,
    ),
    Backend(
        "rvc",
        "voice",
        "mirage.models.voice.rvc.converter:RvcConverter",
        "RVC v1/v2 voice conversion; needs its weights",
        check="mirage.models.voice.rvc.files:unavailable_reason",
        options=RVC_OPTIONS,
        weights=True,
    ),
    # Test backends: fault injection for the engine's failure contracts.
    Backend(
        "invert",
        "face",
        "mirage.models.testing:InvertAnimator",
        "colour-inverted camera image",
        testing=True,
    ),
    Backend(
        "slow",
        "face",
        "mirage.models.testing:SlowAnimator",
        "pass-through after a configurable delay",
        testing=True,
        options=SLOW_FACE_OPTIONS,
    ),
    Backend(
        "failing",
        "face",
        "mirage.models.testing:FailingAnimator",
        "raises on every Nth frame",
        testing=True,
        options=EVERY_OPTIONS,
    ),
    Backend(
        "hang",
        "face",
        "mirage.models.testing:HangAnimator",
        "hangs once after N frames",
        testing=True,
        options=HANG_FACE_OPTIONS,
    ),
    Backend(
        "hang",
        "voice",
        "mirage.models.testing:HangConverter",
        "hangs once after N blocks",
        testing=True,
        options=HANG_VOICE_OPTIONS,
    ),
    Backend(
        "slow",
        "voice",
        "mirage.models.testing:SlowConverter",
        "pass-through after a configurable delay",
        testing=True,
        options=SLOW_VOICE_OPTIONS,
    ),
    Backend(
        "failing",
        "voice",
        "mirage.models.testing:FailingConverter",
        "raises on every Nth block",
        testing=True,
        options=EVERY_OPTIONS,
    ),
    Backend(
        "delay",
        "voice",
        "mirage.models.testing:DelayConverter",
        "pass-through delayed by delay_ms",
        testing=True,
        options=DELAY_OPTIONS,
    ),
)


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def find(kind: Kind, name: str, *, testing: bool = False) -> Backend:
    """The backend ``name``; a fault-injection one only with ``testing`` (the process's
    test-only switch), so no client can park a server thread in ``hang``."""
    for backend in BACKENDS:
        if backend.kind == kind and backend.name == name and (testing or not backend.testing):
            return backend
    known = ", ".join(b.name for b in BACKENDS if b.kind == kind and (testing or not b.testing))
    raise UnknownBackend(f"unknown {kind} backend {name!r}; known: {known}")


def validate(
    kind: Kind, name: str, options: Any, *, testing: bool = False, live: bool = False
) -> dict[str, Any]:
    """The one check of a client's backend request, before anything is made: the name
    (test backends only with ``testing``) and every option against the backend's
    schema (``live``: only those a running session may change). ``BadInput`` (400)
    names the option and its allowed values."""
    backend = find(kind, name, testing=testing)
    try:
        return check_options(name, backend.options, options, live=live)
    except BadInput as exc:
        raise BadInput(f"bad {kind} backend option: {exc}") from None


def describe_user_backends() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every user-facing backend's options as plain data (``GET /config``)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {"face": {}, "voice": {}}
    for b in BACKENDS:
        if not b.testing:
            out[b.kind][b.name] = describe(b.options)
    return out


def schema(kind: Kind, name: str) -> tuple[Option, ...]:
    """What a client may set on ``name`` (empty for a backend without options)."""
    return find(kind, name, testing=True).options


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
        if b.kind == kind and not b.testing
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


@dataclass(frozen=True)
class Choice:
    """What ``resolve`` found for one asked-for backend."""

    kind: Kind
    asked: str
    name: str  # what to make (for ``auto``: the best one that runs here)
    passed: tuple[str, ...] = ()  # ``auto``: why each better one was passed over
    unavailable: str | None = None  # an explicit backend that cannot run here: why

    def usable(self) -> str:
        """The server's rule for its defaults: an unusable backend becomes passthrough."""
        return "passthrough" if self.unavailable is not None else self.name

    def required(self) -> str:
        """The offline rule: an explicit backend that cannot run is an error."""
        if self.unavailable is not None:
            raise BackendUnavailable(
                f"{self.kind} backend {self.asked!r} cannot run here: {self.unavailable}"
            )
        return self.name


def resolve(
    kind: Kind, name: str, models_dir: str | None = None, *, testing: bool = False
) -> Choice:
    """``name`` checked against this machine; ``auto`` → the registry's order."""
    if name == "auto":
        chosen, passed = resolve_auto(kind, models_dir)
        return Choice(kind, name, chosen, tuple(passed))
    backend = find(kind, name, testing=testing)
    return Choice(kind, name, name, (), unavailable_reason(backend, models_dir))


def create(
    kind: Kind, name: str, options: dict[str, Any], context: BuildContext | None = None
) -> FaceAnimator | VoiceConverter:
    """The Python factory: any backend, test ones included, options unchecked (every
    way in for clients — routes, CLIs, the relay — calls ``validate`` first), plus
    what the entry declares it takes from ``context``. A factory that makes something
    other than its kind's interface is a ``MirageError`` (500)."""
    backend = find(kind, name, testing=True)
    factory = _resolve(backend.factory)
    given = dict(options)
    if context is not None:
        if backend.weights and context.models_dir is not None:
            given.setdefault("models_dir", context.models_dir)
        if backend.clock and context.clock is not None:
            given.setdefault("clock", context.clock)
    made = factory(**given)
    interface = FaceAnimator if kind == "face" else VoiceConverter
    if not isinstance(made, interface):  # a registration error, not the client's
        raise MirageError(
            f"{backend.factory} made a {type(made).__name__}, not a {interface.__name__}"
        )
    return made


def create_animator(name: str, context: BuildContext | None = None, **options: Any) -> FaceAnimator:
    """Make the face backend ``name``; options are the backend's keyword arguments."""
    animator = create("face", name, options, context)
    assert isinstance(animator, FaceAnimator)  # create checked it
    return animator


def create_converter(
    name: str, context: BuildContext | None = None, **options: Any
) -> VoiceConverter:
    """Make the voice backend ``name``; options are the backend's keyword arguments."""
    converter = create("voice", name, options, context)
    assert isinstance(converter, VoiceConverter)  # create checked it
    return converter
