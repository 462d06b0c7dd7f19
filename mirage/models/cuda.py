"""CUDA memory hygiene that is safe to call on machines without torch or a GPU."""

from __future__ import annotations

import sys


def release_cached_memory() -> None:
    """Return the CUDA caching allocator's free blocks to the driver, so a closed
    session's memory shows up as free (``nvidia-smi``) and other processes can use it.

    Only when torch is already imported and CUDA initialised: importing torch or
    creating a CUDA context here would cost seconds and memory for nothing.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        cuda.empty_cache()
