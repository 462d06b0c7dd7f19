"""Feature retrieval: pull content features toward the target speaker's training features.

RVC's ``added_*.index`` (faiss) holds the content features of the target voice's
training set. Each input frame is replaced by a blend of its 8 nearest stored frames,
weighted by the inverse square of faiss' (squared-L2) distance as upstream does, then
mixed with the original by ``index_rate``: less source-speaker timbre leaks through.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mirage.models.base import WeightsMissing
from mirage.models.checkpoint import BadCheckpoint

K = 8
_MIN_DISTANCE = 1e-12  # an exact match would divide by zero


class FeatureIndex:
    """A faiss index with its vectors held in memory for the weighted blend."""

    def __init__(self, path: Path, dim: int) -> None:
        try:
            import faiss
        except ImportError as exc:  # an optional package
            raise WeightsMissing(f"faiss-cpu is needed to use {path}: {exc}") from exc
        if not path.is_file():
            raise WeightsMissing(f"feature index not found: {path}")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise BadCheckpoint(f"cannot read feature index {path}: {exc}") from exc
        if index.d != dim:
            raise BadCheckpoint(f"{path} holds {index.d}-dim features; the model uses {dim}")
        if index.ntotal == 0:
            raise BadCheckpoint(
                f"{path} holds no vectors (a trained_*.index? use the added_*.index)"
            )
        self.path = path
        self.index = index
        self.vectors = np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
        self.k = min(K, index.ntotal)

    def retrieve(self, feats: np.ndarray) -> np.ndarray:
        """(T, dim) float32 → the inverse-square-distance weighted mean of the k neighbours."""
        query = np.ascontiguousarray(feats, dtype=np.float32)
        distance, ids = self.index.search(query, self.k)
        valid = ids >= 0
        weight = np.where(valid, 1.0 / np.square(np.maximum(distance, _MIN_DISTANCE)), 0.0)
        weight /= np.maximum(weight.sum(axis=1, keepdims=True), _MIN_DISTANCE)
        neighbours = self.vectors[np.where(valid, ids, 0)]
        return np.asarray(np.sum(neighbours * weight[..., None], axis=1), dtype=np.float32)

    def blend(self, feats: np.ndarray, rate: float) -> np.ndarray:
        """``rate`` · retrieved + (1 - ``rate``) · ``feats``; ``rate`` 0 returns ``feats``."""
        if rate <= 0.0:
            return feats
        return np.asarray(rate * self.retrieve(feats) + (1.0 - rate) * feats, dtype=np.float32)
