"""The built-in default portrait, shown until a user uploads their own.

scikit-image's ``astronaut`` (Eileen Collins, a NASA photograph in the public
domain) ships inside the scikit-image wheel, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np


def default_reference() -> np.ndarray:
    """A fresh copy of the default portrait: (512, 512, 3) RGB uint8."""
    from skimage import data  # heavy import: only when the default is needed

    image = np.ascontiguousarray(data.astronaut(), dtype=np.uint8)
    return image
