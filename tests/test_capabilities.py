"""Backend capabilities are declared in types (mirage/models/base.py), never probed.

Every registered backend is a ``FaceAnimator`` or ``VoiceConverter`` with nothing
left abstract; every wrapper (the guard's, the voice chain) forwards each capability
rather than inheriting the base's no-op, and a forwarded call reaches the model.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import numpy as np
import pytest

from mirage.engine.supervised import SupervisedAnimator, SupervisedConverter
from mirage.engine.voicechain import CleanVoice
from mirage.models import registry
from mirage.models.base import BadInput, FaceAnimator, MirageError, VoiceConverter
from mirage.models.voice.passthrough import PassthroughConverter

INTERFACE: dict[str, type] = {"face": FaceAnimator, "voice": VoiceConverter}


def capabilities(base: type) -> list[str]:
    """The public methods and properties ``base`` and its own bases declare."""
    return sorted(
        {
            name
            for cls in base.__mro__
            if cls.__module__ == "mirage.models.base"
            for name, value in vars(cls).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))
        }
    )


def test_the_interfaces_declare_every_capability_the_engine_uses() -> None:
    assert capabilities(FaceAnimator) == [
        "animate",
        "close",
        "reset",
        "set_quality",
        "set_reference",
        "stage_seconds",
        "wait_closed",
    ]
    assert capabilities(VoiceConverter) == [
        "close",
        "convert",
        "live_settings",
        "reset",
        "stage_seconds",
        "update",
        "wait_closed",
    ]


@pytest.mark.parametrize("backend", registry.BACKENDS, ids=lambda b: f"{b.kind}-{b.name}")
def test_every_registered_backend_is_its_kinds_interface(backend: registry.Backend) -> None:
    module, _, attr = backend.factory.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert issubclass(cls, INTERFACE[backend.kind]), f"{backend.factory} is not a backend"
    assert not inspect.isabstract(cls), f"{backend.factory} leaves {cls.__abstractmethods__}"


@pytest.mark.parametrize(
    ("wrapper", "base"),
    [
        (SupervisedAnimator, FaceAnimator),
        (SupervisedConverter, VoiceConverter),
        (CleanVoice, VoiceConverter),
    ],
)
def test_wrappers_forward_every_capability(wrapper: type, base: type) -> None:
    """A wrapper that inherited a default would silently drop what its model does."""
    inherited = [name for name in capabilities(base) if name not in vars(wrapper)]
    assert inherited == [], f"{wrapper.__name__} does not forward {inherited}"


class Recording(FaceAnimator):
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def set_reference(self, image: np.ndarray) -> None:
        self.calls.append("set_reference")

    def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
        return np.zeros((size, size, 3), np.uint8)

    def reset(self) -> None:
        self.calls.append("reset")

    def set_quality(self, quality: str) -> None:
        self.calls.append(("set_quality", quality))

    @property
    def stage_seconds(self) -> dict[str, float]:
        return {"stage": 0.5}

    def close(self) -> None:
        self.calls.append("close")


class Live(PassthroughConverter):
    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, Any] = {}
        self.closed = False

    def update(self, **options: Any) -> None:
        self.options.update(options)

    def close(self) -> None:
        self.closed = True


def test_the_guards_wrappers_pass_each_capability_to_the_model() -> None:
    model = Recording()
    sup = SupervisedAnimator(model, None, None, name="cap", timeout_s=1, restart_after=2)
    sup.set_reference(np.zeros((8, 8, 3), np.uint8))
    sup.reset()
    sup.set_quality("low")
    assert sup.stage_seconds == {"stage": 0.5}
    sup.close()
    assert sup.wait_closed(2.0)
    assert model.calls == ["set_reference", "reset", ("set_quality", "low"), "close"]

    live = Live()
    conv = SupervisedConverter(live, None, name="cap", timeout_s=1, restart_after=2)
    assert conv.live_settings and conv.stage_seconds == {}
    conv.update(semitones=2)
    assert live.options == {"semitones": 2}
    conv.close()
    assert conv.wait_closed(2.0) and live.closed


def test_a_converter_without_live_settings_says_so_in_its_type() -> None:
    plain = PassthroughConverter()
    assert not plain.live_settings
    with pytest.raises(BadInput, match="no live settings"):
        plain.update(semitones=1)
    assert Live().live_settings  # overriding update is declaring it
    chain = CleanVoice(PassthroughConverter(), 0)
    assert chain.live_settings  # denoise is live on any voice
    with pytest.raises(BadInput, match="no live settings"):
        chain.update(semitones=1)


def test_a_factory_that_makes_no_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = registry.Backend("bogus", "face", "builtins:dict", "not a backend", testing=True)
    monkeypatch.setattr(registry, "BACKENDS", (*registry.BACKENDS, bogus))
    with pytest.raises(MirageError, match="builtins:dict made a dict, not a FaceAnimator"):
        registry.create_animator("bogus")
