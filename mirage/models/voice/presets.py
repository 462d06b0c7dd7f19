"""Named voices for the ``dsp`` converter and the validation of its parameters.

A preset is only a set of default parameters: explicit values given with it win,
so ``preset="bright", semitones=6`` is a slightly higher "bright". Every value is
checked here, once, so the converter, the API and the page share one set of
limits and one wording of the errors (``BadInput``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from mirage.models.base import BadInput

SEMITONE_RANGE = (-12.0, 12.0)
FORMANT_RANGE = (0.5, 2.0)
FLAT_HZ_RANGE = (50.0, 400.0)


@dataclass(frozen=True)
class VoiceParams:
    """What the converter does to a voice.

    ``semitones`` shifts the pitch; ``formant`` scales the spectral envelope's
    frequency axis (1.0 = unchanged, > 1 a smaller vocal tract). ``flat_hz``
    replaces the melody by a monotone at that pitch (the robot); ``whisper``
    drops the voicing so only breath noise shaped by the envelope is left.
    """

    semitones: float = 0.0
    formant: float = 1.0
    flat_hz: float | None = None
    whisper: bool = False

    @property
    def is_identity(self) -> bool:
        return (
            self.semitones == 0.0
            and self.formant == 1.0
            and self.flat_hz is None
            and not self.whisper
        )


@dataclass(frozen=True)
class VoicePreset:
    name: str
    description: str
    params: VoiceParams


PRESETS: tuple[VoicePreset, ...] = (
    VoicePreset("neutral", "your own voice, unchanged", VoiceParams()),
    VoicePreset(
        "deep", "lower and darker: pitch -5 semitones, formants x0.88", VoiceParams(-5.0, 0.88)
    ),
    VoicePreset(
        "bright",
        "male to female: pitch +5 semitones, formants x1.18",
        VoiceParams(5.0, 1.18),
    ),
    VoicePreset(
        "masculine",
        "female to male: pitch -5 semitones, formants x0.85",
        VoiceParams(-5.0, 0.85),
    ),
    VoicePreset(
        "child", "small and high: pitch +8 semitones, formants x1.3", VoiceParams(8.0, 1.3)
    ),
    VoicePreset(
        "giant", "huge and low: pitch -10 semitones, formants x0.75", VoiceParams(-10.0, 0.75)
    ),
    VoicePreset(
        "robot", "monotone at 110 Hz, formants unchanged", VoiceParams(0.0, 1.0, flat_hz=110.0)
    ),
    VoicePreset("whisper", "no voicing, breath only", VoiceParams(whisper=True)),
)

PARAM_NAMES = ("semitones", "formant", "flat_hz", "whisper")


def presets() -> dict[str, dict[str, Any]]:
    """Every preset by name, as plain data for the API and the page."""
    return {p.name: {"description": p.description, **asdict(p.params)} for p in PRESETS}


def find_preset(name: str) -> VoicePreset:
    for preset in PRESETS:
        if preset.name == name:
            return preset
    known = ", ".join(p.name for p in PRESETS)
    raise BadInput(f"unknown voice preset {name!r}; known: {known}")


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadInput(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise BadInput(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise BadInput(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise BadInput(f"{name} must be true or false, got {value!r}")


def resolve(base: VoiceParams, preset: str | None = None, **values: Any) -> VoiceParams:
    """``base``, replaced by ``preset``'s parameters, then by the explicit ``values``.

    Values may come from JSON or a query string, so numbers given as strings are
    accepted; ``None`` means "not given" (and, for ``flat_hz``, 0 turns it off).
    """
    unknown = sorted(set(values) - set(PARAM_NAMES))
    if unknown:
        raise BadInput(
            f"unknown voice parameter(s) {', '.join(unknown)}; "
            f"known: preset, {', '.join(PARAM_NAMES)}"
        )
    params = base
    if preset is not None:
        if not isinstance(preset, str):
            raise BadInput(f"preset must be a name, got {preset!r}")
        params = find_preset(preset).params
    changes: dict[str, Any] = {}
    if values.get("semitones") is not None:
        changes["semitones"] = _number("semitones", values["semitones"], *SEMITONE_RANGE)
    if values.get("formant") is not None:
        changes["formant"] = _number("formant", values["formant"], *FORMANT_RANGE)
    if values.get("flat_hz") is not None:
        flat = values["flat_hz"]
        off = not isinstance(flat, bool) and flat in (0, "0", "")
        changes["flat_hz"] = None if off else _number("flat_hz", flat, *FLAT_HZ_RANGE)
    if values.get("whisper") is not None:
        changes["whisper"] = _flag("whisper", values["whisper"])
    return replace(params, **changes)
