"""Task discovery: the task structure of an unlabelled pool as clusters with ``verb|noun`` names and sizes."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from pie_retriever._util import check_int
from pie_retriever.downstream.clustering import choose_k, kmeans
from pie_retriever.downstream.naming import name_clusters

__all__ = ["candidate_ks", "discover_tasks", "format_table"]


def candidate_ks(n: int, count: int = 8) -> list[int]:
    """A geometric grid of cluster counts around sqrt(n) (from sqrt(n)/2 to 4·sqrt(n), capped at n/4)."""
    root = math.sqrt(n)
    lo, hi = max(2, round(root / 2)), max(3, min(n // 4, round(4 * root)))
    if hi <= lo:
        return [lo]
    return sorted({round(lo * (hi / lo) ** (i / (count - 1))) for i in range(count)})


def discover_tasks(texts: Sequence[str], vectors: np.ndarray, *, n_clusters: int | None = None, labels: Sequence[str] | None = None,
                   seed: int = 0, examples: int = 3, show_progress: bool = False) -> dict[str, Any]:
    """Cluster a pool and name each cluster by the labeler's majority ``verb|noun``.

    ``n_clusters=None`` picks the count with the best cosine silhouette among :func:`candidate_ks`.
    ``labels`` (one per text) replaces the labeler, e.g. a cached silver labelling. Returns ``{"n", "k",
    "silhouette" ({k: score} when chosen), "clusters": [{"cluster", "name", "label", "purity", "verb_share",
    "size", "share", "examples"}], "assign"}`` with clusters biggest first; ``examples`` are the instructions nearest the centroid.
    """
    texts = list(texts)
    x = np.asarray(vectors, dtype=np.float32)
    scores: dict[int, float] = {}
    if n_clusters is None:
        n_clusters, scores = choose_k(x, candidate_ks(len(x)), seed=seed)
    k = check_int(n_clusters, "n_clusters")
    clustering = kmeans(x, k, seed=seed, show_progress=show_progress)
    if labels is None:
        from pie_retriever.downstream.embed import silver_labels

        labels = silver_labels(texts)
    names = name_clusters(labels, clustering.assign)
    sims = np.einsum("ij,ij->i", x, clustering.centroids[clustering.assign])
    clusters = []
    for c, nm in sorted(names.items(), key=lambda kv: (-kv[1].size, kv[0])):
        rows = np.flatnonzero(clustering.assign == c)
        best = rows[np.argsort(-sims[rows], kind="stable")[:examples]]
        clusters.append({"cluster": c, "name": nm.name, "label": nm.label, "purity": round(nm.purity, 4), "verb_share": round(nm.verb_share, 4), "size": nm.size,
                         "share": round(nm.size / len(x), 4), "examples": [texts[i] for i in best]})
    return {"n": len(x), "k": k, "silhouette": {str(kk): round(v, 4) for kk, v in scores.items()}, "clusters": clusters,
            "assign": clustering.assign.tolist()}


def format_table(result: dict[str, Any], *, limit: int | None = None, width: int = 60) -> str:
    """A plain-text table of discovered tasks: rank, name, size, share, purity, one example."""
    rows = result["clusters"][:limit] if limit else result["clusters"]
    name_w = max([len("task")] + [len(r["name"]) + 2 for r in rows])
    gold = "gold" in result  # purity against the pool's own labels (pie_retriever.downstream.task_quality)
    lines = [f"{'#':>4}  {'task':<{name_w}}  {'size':>6}  {'share':>6}  {'purity':>6}  " + ("  gold  " if gold else "") + "example",
             f"{'-' * 4}  {'-' * name_w}  {'-' * 6}  {'-' * 6}  {'-' * 6}  " + ("------  " if gold else "") + f"{'-' * 7}"]
    for i, r in enumerate(rows, 1):
        ex = r["examples"][0].replace("\n", " ") if r["examples"] else ""
        ex = ex if len(ex) <= width else ex[: width - 1] + "…"
        name = r["name"] + (" !" if r.get("low_purity") else "")
        g = "" if not gold else ("     –  " if r.get("gold_purity") is None else f"{r['gold_purity']:>6.2f}  ")
        lines.append(f"{i:>4}  {name:<{name_w}}  {r['size']:>6}  {r['share']:>6.1%}  {r['purity']:>6.2f}  {g}{ex}")
    more = len(result["clusters"]) - len(rows)
    if more > 0:
        lines.append(f"… and {more} more clusters")
    return "\n".join(lines)
