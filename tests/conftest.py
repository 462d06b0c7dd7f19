"""Shared test fixtures: where the project's reference data lives."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

#: ``../shared`` beside the checkout (CI lays a copy there); ``MIRAGE_SHARED`` moves it.
SHARED = Path(os.environ.get("MIRAGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
MEDIA = SHARED / "media"
GOLDEN = SHARED / "golden"
CHROMIUM = Path("/usr/bin/chromium")


def need_chromium() -> None:
    """Debian chromium or no browser test: missing, it fails in CI or as root (.ci/run
    installs it, so its absence there is a broken install) and skips loudly elsewhere."""
    from tests.ci_skips import in_ci  # (imported late: pytest loads it as a plugin first)

    if CHROMIUM.exists():
        return
    if in_ci() or os.geteuid() == 0:
        pytest.fail("Debian chromium is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip("SKIPPED LOUDLY: /usr/bin/chromium is not installed and we are not root")


# The test-only switch for what reads settings from the environment (the CLIs, their
# subprocesses, the examples): fault-injection backends are reachable in tests only.
# tests/test_options.py checks that they are not without it.
os.environ["MIRAGE_TEST_BACKENDS"] = "1"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"reference data not found at {SHARED} (set MIRAGE_SHARED)"
    return SHARED


@functools.cache
def load_fill() -> ModuleType:
    """The golden folder's ``fill.py`` (deterministic weights), imported by path."""
    spec = importlib.util.spec_from_file_location("golden_fill", GOLDEN / "fill.py")
    assert spec is not None and spec.loader is not None, f"no fill.py in {GOLDEN}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module: on two shared cores more threads only
    spin against each other. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


pytest_plugins = ["tests.server_fixtures", "tests.ci_skips", "pytester"]
