"""Retrieval and embedding-quality metrics shared by ``pie-retriever eval`` and the benchmarks.

Retrieval metrics work on a boolean relevance matrix ``rel`` of shape ``(n_queries, k)``: ``rel[i, j]``
is True when the ``j``-th ranked item for query ``i`` is relevant (same task label). Build it with
:func:`relevance`. Clustering and correlation use scikit-learn and scipy, imported lazily.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pie_retriever._util import check_k
from pie_retriever.errors import ConfigError

__all__ = ["clustering_scores", "mrr", "ndcg_at_k", "paired_bootstrap", "precision_at_k", "purity_score", "relevance", "spearman"]


def _as_rel(rel: Any) -> np.ndarray:
    arr = np.asarray(rel, dtype=bool)
    if arr.ndim != 2:
        msg = f"rel must be a 2-d (n_queries, k) boolean array, got shape {arr.shape}."
        raise ConfigError(msg)
    return arr


def _check_k(k: Any, width: int) -> int:
    k = check_k(k)
    if k > width:
        msg = f"k={k} is larger than the number of ranked items per query ({width})."
        raise ConfigError(msg)
    return k


def relevance(query_labels: Sequence[Any], ranked_labels: Any) -> np.ndarray:
    """``rel[i, j] = ranked_labels[i][j] == query_labels[i]`` as a bool array ``(n_queries, k)``.

    ``ranked_labels`` is a 2-d array (or list of equal-length lists) of the labels of the ranked items.
    """
    q = np.asarray(list(query_labels), dtype=object)
    ranked = np.asarray(ranked_labels, dtype=object)
    if ranked.ndim == 1 and len(q) == 0:
        ranked = ranked.reshape(0, 0)
    if ranked.ndim != 2:
        msg = f"ranked_labels must be 2-d (n_queries, k), got shape {ranked.shape}."
        raise ConfigError(msg)
    if ranked.shape[0] != len(q):
        msg = f"query_labels has {len(q)} entries but ranked_labels has {ranked.shape[0]} rows; they must match."
        raise ConfigError(msg)
    return np.asarray(ranked == q[:, None], dtype=bool)


def precision_at_k(rel: Any, k: int) -> float:
    """Mean over queries of the share of relevant items among the top ``k``."""
    rel = _as_rel(rel)
    if rel.shape[0] == 0:
        return float("nan")
    k = _check_k(k, rel.shape[1])
    return float(rel[:, :k].mean(axis=1).mean())


def mrr(rel: Any) -> float:
    """Mean reciprocal rank of the first relevant item within the ranked list (0 when none is relevant)."""
    rel = _as_rel(rel)
    if rel.shape[0] == 0:
        return float("nan")
    if rel.shape[1] == 0:
        return 0.0
    hit = rel.any(axis=1)
    first = rel.argmax(axis=1)
    return float(np.where(hit, 1.0 / (first + 1.0), 0.0).mean())


def ndcg_at_k(rel: Any, k: int, n_relevant: Sequence[int] | np.ndarray | None = None) -> float:
    """Mean nDCG@k with binary gains and ``1/log2(rank + 1)`` discounts.

    The ideal DCG of query ``i`` puts ``min(k, n_relevant[i])`` relevant items first; without
    ``n_relevant`` it uses the relevant items found in the ranked list itself. Queries with an ideal
    DCG of 0 score 0.
    """
    rel = _as_rel(rel)
    if rel.shape[0] == 0:
        return float("nan")
    k = _check_k(k, rel.shape[1])
    top = rel[:, :k].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = top @ discounts
    if n_relevant is None:
        n_ideal = rel.sum(axis=1)
    else:
        n_ideal = np.asarray(n_relevant, dtype=np.int64)
        if n_ideal.shape != (rel.shape[0],):
            msg = f"n_relevant must have one entry per query ({rel.shape[0]}), got shape {n_ideal.shape}."
            raise ConfigError(msg)
    n_ideal = np.clip(n_ideal, 0, k)
    cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = cum[n_ideal]
    score = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return float(score.mean())


def purity_score(labels_true: Sequence[Any], labels_pred: Sequence[Any]) -> float:
    """Share of items that belong to the majority gold label of their predicted cluster."""
    from sklearn.metrics.cluster import contingency_matrix

    cm = contingency_matrix(labels_true, labels_pred)
    return float(cm.max(axis=0).sum() / cm.sum())


def clustering_scores(vectors: Any, labels: Sequence[Any], *, seed: int = 0) -> dict[str, float]:
    """The paper's instruction-clustering protocol: KMeans with one cluster per gold label.

    ``KMeans(n_clusters=len(set(labels)), random_state=seed, n_init="auto")``; returns the adjusted Rand
    index (``ari``), ``purity`` and ``homogeneity`` of the clusters against ``labels``.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, homogeneity_score

    x = np.asarray(vectors, dtype=np.float32)
    labels = list(labels)
    if x.ndim != 2 or x.shape[0] != len(labels):
        msg = f"vectors must be (n, d) with one row per label; got shape {x.shape} and {len(labels)} labels."
        raise ConfigError(msg)
    n_clusters = len(set(labels))
    if n_clusters < 1 or n_clusters > x.shape[0]:
        msg = f"Need between 1 and {x.shape[0]} distinct labels for clustering, got {n_clusters}."
        raise ConfigError(msg)
    pred = KMeans(n_clusters=n_clusters, random_state=seed, n_init="auto").fit_predict(x)
    return {
        "ari": float(adjusted_rand_score(labels, pred)),
        "purity": purity_score(labels, pred),
        "homogeneity": float(homogeneity_score(labels, pred)),
    }


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (scipy)."""
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        msg = f"x and y must be 1-d of equal length, got shapes {x.shape} and {y.shape}."
        raise ConfigError(msg)
    return float(spearmanr(x, y).statistic)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over paired items with a 95% percentile bootstrap interval (``n`` resamples,
    ``scipy.stats.bootstrap(..., paired=True, method="percentile")``)."""
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(x) == 0:
        return {"diff": float("nan"), "lo": float("nan"), "hi": float("nan")}
    if len(x) == 1 or np.all(x == x[0]):  # every resample has the same mean
        return {"diff": float(x.mean()), "lo": float(x.mean()), "hi": float(x.mean())}
    from pie_retriever.errors import require

    stats = require("scipy.stats", "bench", "The paired bootstrap interval")
    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    res = stats.bootstrap((a_, b_), lambda u, v, axis=-1: np.mean(u - v, axis=axis), paired=True, vectorized=True,
                          n_resamples=n, confidence_level=0.95, method="percentile", random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return {"diff": float(x.mean()), "lo": float(ci.low), "hi": float(ci.high)}
