"""Test-set compression: a small evaluation set that keeps the task distribution of the full one.

Cluster the evaluation set into ``round(ratio * n)`` clusters and keep one item per cluster; each kept
item carries its cluster's size as a weight, so a weighted mean over the small set estimates the mean
over the full set (each cluster stands for all its members).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pie_retriever._util import check_choice
from pie_retriever.downstream.clustering import kmeans, nearest_to_centroids
from pie_retriever.errors import ConfigError

__all__ = ["COMPRESS_METHODS", "Compressed", "compress_indices", "label_distance", "weighted_mean"]

COMPRESS_METHODS: dict[str, str] = {
    "kmeans": "the item nearest each KMeans centroid (the paper's representatives), weighted by cluster size",
    "stratified": "one seeded random item per KMeans cluster (clusters as strata), weighted by cluster size",
    "random": "a seeded uniform sample, equal weights (the baseline)",
}


@dataclass
class Compressed:
    """``indices`` (sorted rows kept) and ``weights[j]``: how many items of the full set row ``indices[j]`` stands for."""

    indices: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


def _check_ratio(ratio: float, n: int) -> int:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        msg = f"ratio must be a number in (0, 1], got {ratio!r}; e.g. 0.1 keeps a tenth of the set."
        raise ConfigError(msg)
    return max(1, min(n, round(ratio * n)))


def compress_indices(vectors: np.ndarray, ratio: float = 0.1, method: str = "kmeans", *, seed: int = 0,
                     niter: int = 20, show_progress: bool = False) -> Compressed:
    """Pick about ``ratio * n`` rows of an evaluation set by ``COMPRESS_METHODS[method]``, with weights summing to n."""
    check_choice("compression method", method, COMPRESS_METHODS)
    x = np.asarray(vectors, dtype=np.float32)
    m = _check_ratio(ratio, len(x))
    rng = np.random.default_rng(seed)
    if method == "random":
        idx = np.sort(rng.choice(len(x), size=m, replace=False))
        return Compressed(idx, np.full(m, len(x) / m))
    clustering = kmeans(x, m, seed=seed, niter=niter, show_progress=show_progress)
    if method == "kmeans":
        idx = nearest_to_centroids(x, clustering)
    else:
        order = rng.permutation(len(x))  # first member of each cluster in a random order
        _, first = np.unique(clustering.assign[order], return_index=True)
        idx = np.sort(order[first])
    weights = clustering.sizes[clustering.assign[idx]].astype(np.float64)
    return Compressed(idx, weights)


def weighted_mean(scores: np.ndarray, compressed: Compressed) -> np.ndarray:
    """Mean of per-item ``scores`` (n,) or (n, systems) estimated from the compressed set."""
    s = np.asarray(scores, dtype=np.float64)[compressed.indices]
    w = compressed.weights / compressed.weights.sum()
    return np.tensordot(w, s, axes=(0, 0))


def label_distance(labels: Sequence[str], compressed: Compressed) -> float:
    """Total-variation distance between the task distribution of the full set and the weighted compressed one
    (0 = identical, 1 = disjoint)."""
    full: dict[str, float] = {}
    for lab in labels:
        full[lab] = full.get(lab, 0.0) + 1.0 / len(labels)
    small: dict[str, float] = {}
    total = float(compressed.weights.sum())
    for i, w in zip(compressed.indices, compressed.weights):
        small[labels[i]] = small.get(labels[i], 0.0) + w / total
    return 0.5 * sum(abs(full.get(k, 0.0) - small.get(k, 0.0)) for k in set(full) | set(small))
