"""A 2-D task map of a pool: UMAP (``downstream`` extra) or t-SNE (scikit-learn), coloured by task label or by
discovered cluster, each group named at its centre (labels never overlap), as a PNG and optionally an HTML page."""

from __future__ import annotations

import html
import importlib.util
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pie_retriever._threads import threads_for
from pie_retriever._util import check_choice
from pie_retriever.downstream.labels_layout import place_labels
from pie_retriever.errors import ConfigError

__all__ = ["COLOR_BY", "PROJECTIONS", "MapPanel", "group_silhouette", "make_panel", "plot_maps", "project_2d", "write_html"]

PROJECTIONS: dict[str, str] = {
    "auto": "UMAP when umap-learn is installed (the downstream extra), else t-SNE",
    "umap": "umap-learn UMAP, cosine metric, 15 neighbours",
    "tsne": "scikit-learn t-SNE, cosine metric, PCA initialisation",
}
COLOR_BY: dict[str, str] = {
    "task": "the task label (metadata.task, else the labeler's silver verb|noun)",
    "cluster": "KMeans clusters named by the labeler's majority verb|noun",
}


def project_2d(vectors: np.ndarray, method: str = "auto", *, seed: int = 0) -> np.ndarray:
    """(n, 2) coordinates of unit ``vectors`` by ``PROJECTIONS[method]`` (seeded, so reruns give the same map)."""
    check_choice("projection", method, PROJECTIONS)
    x = np.asarray(vectors, dtype=np.float32)
    if len(x) < 5:
        msg = f"A map needs at least 5 instructions, got {len(x)}."
        raise ConfigError(msg)
    if method == "auto":
        method = "umap" if importlib.util.find_spec("umap") else "tsne"
    if method == "umap":
        from pie_retriever.errors import require

        umap = require("umap", "downstream", "a UMAP projection")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": seeding is wanted
            reducer = umap.UMAP(n_neighbors=min(15, len(x) - 1), min_dist=0.1, metric="cosine", random_state=seed)
            return np.asarray(reducer.fit_transform(x), dtype=np.float32)
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    tsne = TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity, random_state=seed)
    with threads_for(len(x)):
        return np.asarray(tsne.fit_transform(x), dtype=np.float32)


def group_silhouette(vectors: np.ndarray, groups: Sequence[str], *, seed: int = 0) -> float | None:
    """Cosine silhouette of ``vectors`` grouped by ``groups`` (how well the embedding separates them); None if undefined."""
    from sklearn.metrics import silhouette_score

    k = len(set(groups))
    if k < 2 or k >= len(groups):
        return None
    with threads_for(min(5000, len(groups))):
        return float(silhouette_score(vectors, list(groups), metric="cosine", sample_size=min(5000, len(groups)), random_state=seed))


@dataclass
class MapPanel:
    """One map: 2-D points, one group name per point, a title; ``hover`` texts for the HTML page."""

    xy: np.ndarray
    groups: list[str]
    title: str = ""
    hover: list[str] = field(default_factory=list)


def _palette(n: int) -> list[Any]:
    import matplotlib

    base = list(matplotlib.colormaps["tab20"].colors) + list(matplotlib.colormaps["tab20b"].colors)
    return [base[i % len(base)] for i in range(n)]


def _colors(groups: Sequence[str], max_groups: int) -> dict[str, Any]:
    """The ``max_groups`` biggest groups get a colour each (biggest first); the rest are grey ``other``."""
    top = [g for g, _ in Counter(groups).most_common(max_groups)]
    return dict(zip(top, _palette(len(top))))


def _scatter(ax: Any, panel: MapPanel, colors: dict[str, Any]) -> None:
    groups = np.asarray(panel.groups, dtype=object)
    known = np.isin(groups, list(colors))
    ax.scatter(panel.xy[~known, 0], panel.xy[~known, 1], s=6, c="lightgrey", linewidths=0)
    for g, color in colors.items():
        pts = panel.xy[groups == g]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, color=color, linewidths=0, alpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(panel.title, fontsize=11)
    ax.margins(0.12)


def _label(ax: Any, panel: MapPanel, colors: dict[str, Any], max_labels: int, fontsize: float) -> list[str]:
    """Name the coloured groups at their median point, biggest first; returns the names left out."""
    groups = np.asarray(panel.groups, dtype=object)
    named = [g for g in colors if (groups == g).any()][:max_labels]
    anchors = [tuple(np.median(panel.xy[groups == g], axis=0)) for g in named]
    _, skipped = place_labels(ax, anchors, named, [colors[g] for g in named], fontsize=fontsize)
    return skipped


def plot_maps(panels: Sequence[MapPanel], path: str | os.PathLike, *, max_groups: int = 40, max_labels: int = 40,
              fontsize: float = 7.5, panel_size: float = 7.0, suptitle: str | None = None) -> dict[str, list[str]]:
    """Draw one or more maps side by side into a PNG; groups share colours across panels. Returns the names
    that found no free spot, per panel title (empty lists when every name was placed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = _colors([g for p in panels for g in p.groups], max_groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size * len(panels), panel_size), squeeze=False, layout="constrained", dpi=110)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    for ax, panel in zip(axes[0], panels):
        _scatter(ax, panel, colors)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # freeze the layout first: labels are placed against the final axes
    skipped = {panel.title: _label(ax, panel, colors, max_labels, fontsize) for ax, panel in zip(axes[0], panels)}
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return skipped


def write_html(panel: MapPanel, path: str | os.PathLike, *, max_groups: int = 40) -> None:
    """A self-contained HTML page (inline SVG, no script, no network): one dot per instruction, its text and group on hover."""
    from matplotlib.colors import to_hex

    colors = {g: to_hex(c) for g, c in _colors(panel.groups, max_groups).items()}
    xy = np.asarray(panel.xy, dtype=np.float64)
    lo, span = xy.min(axis=0), np.ptp(xy, axis=0) + 1e-9
    pts = 20 + 760 * (xy - lo) / span
    hover = panel.hover or [""] * len(xy)
    dots = []
    for (x, y), g, text in zip(pts, panel.groups, hover):
        tip = html.escape(f"{g}: {text}" if text else g)
        dots.append(f'<circle cx="{x:.1f}" cy="{800 - y:.1f}" r="3.2" fill="{colors.get(g, "#c8c8c8")}"><title>{tip}</title></circle>')
    counts = Counter(panel.groups)
    legend = "".join(f'<li><span style="background:{c}"></span>{html.escape(g)} ({counts[g]})</li>' for g, c in colors.items())
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(panel.title or 'task map')}</title>"
            "<style>body{font:13px sans-serif;display:flex;gap:16px}ul{list-style:none;padding:0;columns:2}"
            "li span{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:5px}</style>"
            f"<div><h3>{html.escape(panel.title)}</h3><svg width='800' height='800' style='border:1px solid #ddd'>{''.join(dots)}</svg></div>"
            f"<div><h3>groups</h3><ul>{legend}</ul><p>grey: other groups. Hover a dot for its instruction.</p></div>")
    from pie_retriever._util import atomic_write_text

    atomic_write_text(path, page)


def make_panel(texts: Sequence[str], vectors: np.ndarray, *, color_by: str = "task", labels: Sequence[str] | None = None,
               n_clusters: int | None = None, projection: str = "auto", seed: int = 0, title: str = "") -> tuple[MapPanel, dict[str, Any]]:
    """Project a pool and group its points by ``COLOR_BY[color_by]``; returns the panel and a summary
    (``groups`` sizes, ``silhouette`` of the grouping in the embedding space, ``k`` for clusters).

    ``labels``: one task label per text (gold or silver); computed with the labeler when ``None``.
    """
    check_choice("color-by", color_by, COLOR_BY)
    texts = list(texts)
    x = np.asarray(vectors, dtype=np.float32)
    if labels is None:
        from pie_retriever.downstream.embed import silver_labels

        labels = silver_labels(texts)
    summary: dict[str, Any] = {"color_by": color_by, "projection": projection}
    if color_by == "task":
        groups = [str(g) for g in labels]
    else:
        from pie_retriever.downstream.clustering import kmeans
        from pie_retriever.downstream.naming import name_clusters
        from pie_retriever.downstream.tasks import candidate_ks

        if n_clusters is None:
            from pie_retriever.downstream.clustering import choose_k

            n_clusters, _ = choose_k(x, candidate_ks(len(x)), seed=seed)
        assign = kmeans(x, n_clusters, seed=seed).assign
        names = name_clusters(labels, assign)
        groups = [names[int(c)].name for c in assign]
        summary["k"] = int(n_clusters)
    summary["silhouette"] = group_silhouette(x, groups, seed=seed)
    summary["groups"] = dict(Counter(groups).most_common())
    panel = MapPanel(project_2d(x, projection, seed=seed), groups, title, texts)
    return panel, summary
