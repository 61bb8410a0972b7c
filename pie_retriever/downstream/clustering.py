"""Clustering primitives on unit vectors: faiss spherical KMeans (with a progress bar), the sample nearest each
centroid, greedy k-center, and an automatic choice of the number of clusters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pie_retriever._threads import threads_for
from pie_retriever._util import check_int
from pie_retriever.errors import ConfigError

__all__ = ["Clustering", "choose_k", "kcenter", "kmeans", "kmeans_pp", "nearest_to_centroids"]

logger = logging.getLogger(__name__)


@dataclass
class Clustering:
    """``centroids`` (k, d) unit rows; ``assign[i]`` is the cluster of row ``i``; ``sizes[c]`` its size."""

    centroids: np.ndarray
    assign: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.assign, minlength=self.k)


def _check_vectors(vectors: np.ndarray, k: int, what: str = "clusters") -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        msg = f"vectors must be a non-empty (n, d) array, got shape {x.shape}."
        raise ConfigError(msg)
    if k > len(x):
        msg = f"Cannot make {k} {what} from {len(x)} vectors; pass a number <= {len(x)}."
        raise ConfigError(msg)
    return x


def kmeans_pp(vectors: np.ndarray, k: int, *, seed: int = 0, sample: int | None = None) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on unit vectors: (k, d) initial centroids.

    Runs on a seeded subsample of ``max(50 k, 10,000)`` rows when the set is larger (one matrix-vector
    product per centroid), which keeps 600 centroids over 100k rows to a few seconds.
    """
    x = np.asarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    limit = sample or max(50 * k, 10000)
    if len(x) > limit:
        x = x[rng.choice(len(x), size=limit, replace=False)]
    chosen = [int(rng.integers(len(x)))]
    dist = np.maximum(2.0 - 2.0 * (x @ x[chosen[0]]), 0.0)  # squared euclidean distance on the unit sphere
    for _ in range(k - 1):
        total = float(dist.sum())
        pick = int(rng.choice(len(x), p=dist / total)) if total > 0 else int(rng.integers(len(x)))
        chosen.append(pick)
        np.minimum(dist, np.maximum(2.0 - 2.0 * (x @ x[pick]), 0.0), out=dist)
    return np.ascontiguousarray(x[chosen], dtype=np.float32)


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, niter: int = 20, show_progress: bool = False) -> Clustering:
    """Spherical KMeans with faiss (cosine on unit vectors) from a k-means++ start: one ``faiss.Kmeans`` of
    ``niter`` iterations (faiss reports no per-iteration progress; the bar counts the run).

    faiss trains on every point (no subsampling), so 100k × 384 with k = 600 is ~10 s on 2 cores.
    """
    import faiss

    k = check_int(k, "number of clusters")
    x = _check_vectors(vectors, k)
    niter = check_int(niter, "niter")
    params = {"niter": niter, "seed": int(seed), "spherical": True, "max_points_per_centroid": max(256, len(x) // k + 1),
              "min_points_per_centroid": 1, "verbose": False}
    with threads_for(len(x)):
        from tqdm.auto import tqdm

        with tqdm(total=niter, desc=f"kmeans k={k}", unit="iter", disable=None if show_progress else True) as bar:
            km = faiss.Kmeans(x.shape[1], k, **params)
            km.train(x, init_centroids=kmeans_pp(x, k, seed=seed))
            bar.update(niter)
        centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(centroids)
        _, assign = index.search(x, 1)
    return Clustering(centroids, assign[:, 0].astype(np.int64))


def nearest_to_centroids(vectors: np.ndarray, clustering: Clustering) -> np.ndarray:
    """One distinct row index per non-empty cluster: its member with the highest cosine to the centroid."""
    x = np.asarray(vectors, dtype=np.float32)
    sims = np.einsum("ij,ij->i", x, clustering.centroids[clustering.assign])
    order = np.lexsort((-sims, clustering.assign))  # by cluster, best first
    first = np.ones(len(order), dtype=bool)
    first[1:] = clustering.assign[order][1:] != clustering.assign[order][:-1]
    return np.sort(order[first])


def kcenter(vectors: np.ndarray, k: int, *, seed: int = 0, candidates: Sequence[int] | None = None) -> np.ndarray:
    """Greedy k-center (farthest-point): start at the row nearest the mean, then add the row farthest (cosine)
    from every chosen one. ``candidates`` restricts the rows considered. Deterministic; ``seed`` breaks ties only."""
    k = check_int(k, "number of centers")
    x = np.asarray(vectors, dtype=np.float32)
    rows = np.arange(len(x)) if candidates is None else np.asarray(candidates, dtype=np.int64)
    sub = _check_vectors(x[rows], k, "centers")
    jitter = np.random.default_rng(seed).random(len(sub)) * 1e-7
    mean = sub.mean(axis=0)
    chosen = [int(np.argmax(sub @ mean + jitter))]
    best = sub @ sub[chosen[0]]  # highest cosine to any chosen row
    for _ in range(k - 1):
        pick = int(np.argmin(best - jitter))
        chosen.append(pick)
        np.maximum(best, sub @ sub[pick], out=best)
    return np.sort(rows[np.asarray(chosen)])


def choose_k(vectors: np.ndarray, candidates: Sequence[int], *, seed: int = 0, sample: int = 3000) -> tuple[int, dict[int, float]]:
    """The candidate k with the best cosine silhouette of its KMeans (on at most ``sample`` rows); returns
    ``(k, {k: silhouette})``."""
    from sklearn.metrics import silhouette_score

    x = np.asarray(vectors, dtype=np.float32)
    ks = sorted({int(c) for c in candidates if 2 <= int(c) < len(x)})
    if not ks:
        msg = f"No usable number of clusters among {list(candidates)} for {len(x)} vectors (need 2 <= k < n)."
        raise ConfigError(msg)
    scores = {}
    for k in ks:
        assign = kmeans(x, k, seed=seed).assign
        if len(np.unique(assign)) < 2:
            continue
        with threads_for(min(sample, len(x))):
            scores[k] = float(silhouette_score(x, assign, metric="cosine", sample_size=min(sample, len(x)), random_state=seed))
        logger.info("k=%d silhouette=%.4f", k, scores[k])
    best = max(scores, key=lambda k: scores[k])
    return best, scores
