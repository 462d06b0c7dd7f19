"""Where RVC's weight files go in the weights folder, and whether the required ones are there.

Kept free of torch so the backend registry (and the server's start-up) can answer
"is rvc usable here?" without importing torch and transformers.
"""

from __future__ import annotations

from mirage.weights import models_dir as resolve_models_dir

MODEL_FILE = "rvc/model.pth"
INDEX_FILE = "rvc/features.index"
RMVPE_FILE = "rmvpe/rmvpe.pt"
HUBERT_FILE = "hubert/hubert_base.pt"


def unavailable_reason(models_dir: str | None = None) -> str | None:
    """The first required weight file that is missing (``rmvpe`` and the index are optional)."""
    root = resolve_models_dir(models_dir)
    for relative in (MODEL_FILE, HUBERT_FILE):
        if not (root / relative).is_file():
            return f"missing weight file {root / relative}"
    return None
