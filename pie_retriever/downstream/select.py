"""Data selection: pick a task-diverse subset of an instruction pool (the paper's first downstream use).

The paper's protocol: encode the instruction-tuning set, KMeans with ``budget`` clusters, keep the sample
nearest each centroid (baseline: ``budget`` random samples). ``SELECT_METHODS`` adds greedy k-center and a
label-driven quota.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from pie_retriever._util import check_choice, check_int
from pie_retriever.downstream.clustering import kcenter, kmeans, nearest_to_centroids
from pie_retriever.errors import ConfigError

__all__ = ["SELECT_METHODS", "quota", "select_subset", "selection_report"]

SELECT_METHODS: dict[str, str] = {
    "kmeans": "faiss KMeans with `budget` clusters, the sample nearest each centroid (the paper's protocol)",
    "kcenter": "greedy k-center: repeatedly add the instruction farthest from every one kept",
    "task-quota": "an even quota per task label (small tasks kept whole), k-center inside each task; needs labels",
    "random": "a seeded uniform sample (the baseline)",
}


def quota(sizes: Sequence[int], budget: int) -> np.ndarray:
    """Water-filling: ``alloc[t] = min(sizes[t], q)`` with the largest ``q`` that fits the budget, the rest
    given one each to the largest tasks. ``sum(alloc) == min(budget, sum(sizes))``."""
    s = np.asarray(sizes, dtype=np.int64)
    budget = min(int(budget), int(s.sum()))
    lo, hi = 0, int(s.max(initial=0))
    while lo < hi:  # largest q with sum(min(s, q)) <= budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(s, mid).sum() <= budget else (lo, mid - 1)
    alloc = np.minimum(s, lo)
    room = np.flatnonzero(s > alloc)
    extra = budget - int(alloc.sum())
    alloc[room[np.argsort(-s[room], kind="stable")[:extra]]] += 1
    return alloc


def _task_quota(vectors: np.ndarray, budget: int, labels: Sequence[str], seed: int) -> np.ndarray:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        groups[lab].append(i)
    names = list(groups)
    if budget < len(names):  # not every task fits: keep the most spread-out tasks, one medoid each
        centroids = np.stack([vectors[groups[n]].mean(axis=0) for n in names])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        names = [names[i] for i in kcenter(centroids, budget, seed=seed)]
        alloc = np.ones(len(names), dtype=np.int64)
    else:
        alloc = quota([len(groups[n]) for n in names], budget)
    chosen = [kcenter(vectors, int(a), seed=seed, candidates=groups[n]) for n, a in zip(names, alloc) if a]
    return np.sort(np.concatenate(chosen))


def select_subset(vectors: np.ndarray, budget: int, method: str = "kmeans", *, labels: Sequence[str] | None = None,
                  seed: int = 0, niter: int = 20, show_progress: bool = False) -> np.ndarray:
    """Row indices (sorted) of a subset of ``budget`` rows chosen by ``SELECT_METHODS[method]``.

    ``kmeans`` fills the slots of clusters faiss leaves empty (duplicated vectors) with the rows least similar
    to those kept, so exactly ``budget`` rows come back; ``labels`` (one per row) is required by ``task-quota`` only.
    """
    check_choice("selection method", method, SELECT_METHODS)
    x = np.asarray(vectors, dtype=np.float32)
    budget = check_int(budget, "budget")
    if budget > len(x):
        msg = f"budget={budget} exceeds the pool size ({len(x)}); pass --budget <= {len(x)}."
        raise ConfigError(msg)
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(len(x), size=budget, replace=False))
    if method == "kcenter":
        return kcenter(x, budget, seed=seed)
    if method == "task-quota":
        if labels is None or len(labels) != len(x):
            got = "none" if labels is None else f"{len(labels)}"
            msg = f"method 'task-quota' needs one task label per row ({len(x)}), got {got}; pass labels (gold or silver)."
            raise ConfigError(msg)
        return _task_quota(x, budget, labels, seed)
    picked = nearest_to_centroids(x, kmeans(x, budget, seed=seed, niter=niter, show_progress=show_progress))
    return _top_up(x, picked, budget)


def _top_up(x: np.ndarray, picked: np.ndarray, budget: int) -> np.ndarray:
    """Fill the slots of empty clusters (duplicated vectors) with the rows least similar to every row kept."""
    chosen = list(picked)
    if len(chosen) >= budget:
        return np.sort(np.asarray(chosen[:budget], dtype=np.int64))
    best = (x @ x[chosen].T).max(axis=1)
    best[chosen] = np.inf
    for _ in range(budget - len(chosen)):
        pick = int(np.argmin(best))
        chosen.append(pick)
        np.maximum(best, x @ x[pick], out=best)
        best[pick] = np.inf
    return np.sort(np.asarray(chosen, dtype=np.int64))


def selection_report(vectors: np.ndarray, labels: Sequence[str], budget: int, method: str, *, seeds: int = 5,
                     baseline_vectors: np.ndarray | None = None, seed: int = 0, picked: np.ndarray | None = None) -> dict[str, Any]:
    """Task coverage of ``method`` at ``budget`` vs ``seeds`` random subsets (mean ± sd) and, when
    ``baseline_vectors`` are given (e.g. plain MiniLM's), the same method on those vectors. ``picked``: the
    selection already made on ``vectors`` (else it is made here)."""
    from pie_retriever.downstream.coverage import summarize_runs, task_coverage

    check_int(seeds, "seeds")
    if picked is None:
        picked = select_subset(vectors, budget, method, labels=labels, seed=seed)
    report: dict[str, Any] = {"budget": budget, "method": method, "selected": task_coverage(labels, picked)}
    rand = [task_coverage(labels, select_subset(vectors, budget, "random", seed=s)) for s in range(seeds)]
    report["random"] = summarize_runs(rand)
    if baseline_vectors is not None:
        base = select_subset(baseline_vectors, budget, method, labels=labels, seed=seed)
        report["baseline"] = task_coverage(labels, base)
    return report
