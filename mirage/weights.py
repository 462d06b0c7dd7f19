"""Where weight files live: the weights folder and its seed layout (see mission.md)."""

from __future__ import annotations

from pathlib import Path

#: The default weights folder: ``models/`` at the repository root.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def models_dir(override: str | Path | None = None) -> Path:
    """The weights folder: ``override`` (from settings / ``MIRAGE_MODELS_DIR``) or the default."""
    return Path(override) if override else DEFAULT_MODELS_DIR


def weight_file(relative: str, override: str | Path | None = None) -> Path:
    """The path of one weight file, e.g. ``weight_file("rvc/model.pth")``."""
    return models_dir(override) / relative
