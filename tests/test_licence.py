"""Mirage's licence agrees everywhere it is stated, and so do the weights' licences."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from mirage.ops.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[1]
#: The MIT licence's grant and its disclaimer (opensource.org/license/mit), one line each.
MIT_GRANT = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this"
    ' software and associated documentation files (the "Software"), to deal in the Software'
    " without restriction"
)
MIT_NOTICE = (
    "The above copyright notice and this permission notice shall be included in all copies"
    " or substantial portions of the Software."
)


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_pyproject_and_license_file_say_mit() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # the SPDX expression (PEP 639)
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[0] == "MIT License"
    assert re.search(r"^Copyright \(c\) \d{4} the Mirage authors$", text, re.M), text[:200]
    assert MIT_GRANT in one_line(text) and MIT_NOTICE in one_line(text)
    assert 'PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in one_line(text)
    readme = (ROOT / "README.md").read_text()
    assert "MIT" in readme and "THIRD_PARTY.md" in readme


def weight_licences_in_third_party() -> set[str]:
    """The Licence column of THIRD_PARTY.md's model-weights table."""
    text = (ROOT / "THIRD_PARTY.md").read_text()
    section = text.split("## Model weights", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[2].strip() == "Licence", rows[0]
    return {row.split("|")[2].strip() for row in rows[1:]}


def test_every_weight_licence_is_the_one_third_party_md_gives() -> None:
    assert {w.licence for w in CATALOG} == weight_licences_in_third_party()
    det = next(w for w in CATALOG if w.path.endswith("det_10g.onnx"))
    assert det.noncommercial and "non-commercial" in det.licence


def test_weights_list_prints_those_licences(capsys: pytest.CaptureFixture[str]) -> None:
    from mirage.cli import main

    assert main(["weights", "list", "--models-dir", "/nonexistent"]) == 0
    printed = capsys.readouterr().out.split("\nLicences:\n", 1)[1]
    listed = {line.removeprefix("  - ") for line in printed.splitlines() if line.startswith("  - ")}
    assert listed == weight_licences_in_third_party()
