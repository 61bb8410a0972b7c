"""Dataset task correlation: how much of dataset A's task space dataset B covers, and how far apart they are.

* ``coverage[a][b]`` = mean over A's instructions of the highest cosine to any instruction of B (directional:
  a broad B covers a narrow A, not the other way round). The diagonal is leave-one-out (each instruction's
  nearest *other* instruction of the same set), a measure of the set's redundancy.
* ``wasserstein[a][b]`` = mean over dimensions of the 1-D Wasserstein distance between the two sets' values,
  on L2-normalised embeddings (the paper's code divided by row sums instead of norms; this divides by norms).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from pie_retriever.encoders.base import l2_normalize
from pie_retriever.errors import ConfigError

__all__ = ["compare_sets", "coverage_score", "plot_comparison", "wasserstein_score"]


def coverage_score(a: np.ndarray, b: np.ndarray, *, same: bool = False) -> float:
    """Mean over rows of ``a`` of the max cosine to a row of ``b`` (``same=True``: ``a is b``, skip self-matches)."""
    import faiss

    a, b = l2_normalize(a), l2_normalize(b)
    if same and len(b) < 2:
        return float("nan")
    index = faiss.IndexFlatIP(b.shape[1])
    index.add(b)
    scores, ids = index.search(a, 2 if same else 1)
    if not same:
        return float(scores[:, 0].mean())
    own = ids[:, 0] == np.arange(len(a))  # the self-match is usually first; ties can put it second
    best = np.where(own, scores[:, 1], scores[:, 0])
    return float(best.mean())


def wasserstein_score(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-dimension 1-D Wasserstein distance (scipy.stats) between L2-normalised ``a`` and ``b``."""
    from scipy.stats import wasserstein_distance

    a, b = l2_normalize(a), l2_normalize(b)
    return float(np.mean([wasserstein_distance(a[:, d], b[:, d]) for d in range(a.shape[1])]))


def _subsample(x: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or len(x) <= limit:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))]


def compare_sets(sets: Mapping[str, np.ndarray], *, max_items: int | None = 20000, seed: int = 0) -> dict[str, Any]:
    """Coverage and Wasserstein matrices between named sets of vectors (rows/columns in ``sets`` order).

    Sets larger than ``max_items`` are subsampled (seeded) for both scores. Returns ``{"names", "sizes",
    "coverage", "wasserstein"}`` with ``coverage[i][j]`` = how well set j covers set i.
    """
    if len(sets) < 2:
        msg = f"compare needs at least two sets, got {len(sets)}; pass two or more pool files."
        raise ConfigError(msg)
    names = list(sets)
    dims = {name: np.asarray(v).shape[1] for name, v in sets.items()}
    if len(set(dims.values())) > 1:
        msg = f"All sets must be embedded by the same encoder; got dimensions {dims}."
        raise ConfigError(msg)
    xs = [_subsample(np.asarray(sets[n], dtype=np.float32), max_items, seed) for n in names]
    k = len(names)
    cov = np.zeros((k, k))
    wd = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            cov[i, j] = coverage_score(xs[i], xs[j], same=i == j)
            if j > i:
                wd[i, j] = wd[j, i] = wasserstein_score(xs[i], xs[j])
    return {"names": names, "sizes": [int(len(sets[n])) for n in names], "compared_items": [len(x) for x in xs],
            "coverage": cov.round(6).tolist(), "wasserstein": wd.round(6).tolist()}


def _heatmap(ax: Any, matrix: np.ndarray, names: list[str], title: str, cmap: str, fmt: str) -> None:
    im = ax.imshow(matrix, cmap=cmap)
    ax.set_xticks(range(len(names)), labels=names, rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_title(title, fontsize=11)
    for i in range(len(names)):
        for j in range(len(names)):
            value = matrix[i, j]
            r, g, b, _ = im.cmap(im.norm(value))  # the cell's own colour decides the text colour (any colormap)
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def plot_comparison(result: Mapping[str, Any], path: str | os.PathLike, *, title: str | None = None) -> None:
    """Two heatmaps side by side (coverage, Wasserstein) written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{n} ({s:,})" for n, s in zip(result["names"], result["sizes"])]
    k = len(names)
    size = 2.2 + 0.75 * k
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 2.5, size + 0.6), constrained_layout=True)
    _heatmap(axes[0], np.asarray(result["coverage"]), names, "coverage: row set covered by column set\n(mean max cosine; diagonal leave-one-out)", "viridis", ".2f")
    _heatmap(axes[1], np.asarray(result["wasserstein"]), names, "distance: mean per-dimension Wasserstein\n(L2-normalised embeddings)", "magma_r", ".4f")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=120)
    plt.close(fig)
