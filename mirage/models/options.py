"""Backend options as data: each backend declares what a client may set (type, range,
default) and every way in (``/offer``, WHIP, ``PATCH /sessions``, ``render``, the
relay) checks a request against that schema here, before anything is built.

Why one schema and not each constructor's own checks: a constructor sees only what
reaches it, after an animator may already be loading weights; a typo, a NaN or a
``delay_ms`` of 1e9 must be a 400 that names the option and its range, and no
option may make the server allocate without bound or park a thread. Options that
are not in a backend's schema (Python-only ones such as ``clock`` or ``networks``)
cannot be set by a client at all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mirage.models.base import BadInput

OptionType = Literal["float", "int", "bool", "choice", "file"]

#: A weights file named by a client: a plain name in the weights folder or one folder
#: below it (``rvc/model.pth``); no part starts with a dot, so never ``..`` or ``/abs``.
_PART = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_FILE_NAME = re.compile(rf"{_PART}(?:/{_PART})?")


@dataclass(frozen=True)
class Option:
    """One client-settable option. ``low``/``high`` bound numbers (inclusive);
    ``choices`` lists the values of a ``choice``; ``nullable`` also allows ``null``
    (the backend's own default, e.g. a preset's value); ``off`` is one more value
    outside the range that switches the feature off (dsp's ``flat_hz=0``); ``live``
    marks an option that ``PATCH /sessions/{id}`` may change on a running session."""

    name: str
    type: OptionType
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    live: bool = False
    off: float | None = None

    def allowed(self) -> str:
        """The allowed values in words, for errors and SECURITY.md."""
        if self.type == "float":
            text = f"a number in {self.low:g}..{self.high:g}"
        elif self.type == "int":
            text = f"an integer in {self.low:g}..{self.high:g}"
        elif self.type == "bool":
            text = "true or false"
        elif self.type == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            text = "a file in the weights folder, e.g. rvc/model.pth (letters, digits, _ . -)"
        if self.off is not None:
            text += f", {self.off:g} (off)"
        return f"{text} or null" if self.nullable else text

    def check(self, value: Any) -> Any:
        """``value`` as the backend wants it, or ``BadInput`` naming the option."""
        if value is None and self.nullable:
            return None
        if self.type in ("float", "int"):
            return self._number(value)
        if self.type == "bool":
            if isinstance(value, bool):
                return value
        elif self.type == "choice":
            if _hashable(value) and not isinstance(value, bool) and value in self.choices:
                return value
        elif isinstance(value, str) and _FILE_NAME.fullmatch(value):
            return value
        raise self._refuse(value)

    def _number(self, value: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._refuse(value)
        if not math.isfinite(value):
            raise self._refuse(value)
        assert self.low is not None and self.high is not None
        if self.off is not None and value == self.off:
            return value
        if self.type == "int":
            if isinstance(value, float) and not value.is_integer():
                raise self._refuse(value)
            value = int(value)
        if not self.low <= value <= self.high:
            raise self._refuse(value)
        return float(value) if self.type == "float" else value

    def _refuse(self, value: Any) -> BadInput:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return BadInput(f"option {self.name} must be {self.allowed()}, got {shown}")


def _hashable(value: Any) -> bool:
    return isinstance(value, (str, int, float))


def check_options(
    backend: str, schema: tuple[Option, ...], options: Mapping[str, Any], *, live: bool = False
) -> dict[str, Any]:
    """``options`` checked against ``schema`` (``live``: only the live ones), or
    ``BadInput`` naming the first bad option and what it allows. Unknown names are
    refused with the known ones listed, so a typo is never silently ignored."""
    if not isinstance(options, Mapping):
        raise BadInput(f"{backend} options must be an object")
    known = {o.name: o for o in schema if o.live or not live}
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        what = "live option(s)" if live else "option(s)"
        listed = ", ".join(known) or "none"
        raise BadInput(f"unknown {backend} {what} {', '.join(unknown)}; known: {listed}")
    checked: dict[str, Any] = {}
    for name, value in options.items():
        try:
            checked[name] = known[name].check(value)
        except BadInput as exc:
            raise BadInput(f"{backend} {exc}") from None
    return checked


def describe(schema: tuple[Option, ...]) -> list[dict[str, Any]]:
    """The schema as plain data (``GET /config``, docs)."""
    return [
        {
            "name": o.name,
            "type": o.type,
            "default": o.default,
            "allowed": o.allowed(),
            "live": o.live,
        }
        for o in schema
    ]
