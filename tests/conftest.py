"""Shared test fixtures: where the project's reference data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ``../shared`` beside the checkout (CI lays a copy there); ``MIRAGE_SHARED`` moves it.
SHARED = Path(os.environ.get("MIRAGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MEDIA = SHARED / "media"
GOLDEN = SHARED / "golden"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"reference data not found at {SHARED} (set MIRAGE_SHARED)"
    return SHARED


pytest_plugins = ["tests.server_fixtures"]
