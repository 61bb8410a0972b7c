"""How well a subset covers the tasks of its pool: distinct labels, entropy, share of the smallest tasks kept."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import numpy as np

__all__ = ["summarize_runs", "task_coverage"]


def _entropy_bits(counts: Sequence[int]) -> float:
    total = float(sum(counts))
    return -sum((c / total) * math.log2(c / total) for c in counts if c) if total else 0.0


def task_coverage(pool_labels: Sequence[str], selected: Sequence[int], *, rare_quantile: float = 0.25) -> dict[str, Any]:
    """Task coverage of the rows ``selected`` of a pool labelled ``pool_labels``.

    Returns ``distinct`` (labels present in the subset), ``label_recall`` (distinct / labels of the pool),
    ``entropy_bits`` (Shannon entropy of the subset's label distribution), ``entropy_norm`` (entropy /
    log2(min(subset size, pool labels)): 1.0 is perfectly even over as many labels as possible),
    ``rare_kept`` (share of the *smallest tasks* with at least one row kept; smallest = labels whose pool
    count is at most the ``rare_quantile`` quantile of the label counts, ``rare_max_size``).
    """
    labels = list(pool_labels)
    idx = np.asarray(selected, dtype=np.int64)
    pool_counts = Counter(labels)
    sub_counts = Counter(labels[i] for i in idx)
    sizes = np.fromiter(pool_counts.values(), dtype=np.int64)
    rare_max = int(np.quantile(sizes, rare_quantile, method="lower")) if len(sizes) else 0
    rare = [lab for lab, c in pool_counts.items() if c <= rare_max]
    even = math.log2(min(len(idx), len(pool_counts))) if min(len(idx), len(pool_counts)) > 1 else 1.0
    entropy = _entropy_bits(list(sub_counts.values()))
    return {
        "n_selected": int(len(idx)),
        "distinct": len(sub_counts),
        "pool_labels": len(pool_counts),
        "label_recall": len(sub_counts) / len(pool_counts) if pool_counts else 0.0,
        "entropy_bits": entropy,
        "entropy_norm": entropy / even,
        "rare_max_size": rare_max,
        "rare_labels": len(rare),
        "rare_kept": sum(lab in sub_counts for lab in rare) / len(rare) if rare else 0.0,
    }


def summarize_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd of every numeric field over several runs (e.g. random subsets over seeds)."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key in runs[0]:
        values = np.asarray([r[key] for r in runs], dtype=np.float64)
        out[key] = float(values.mean())
        out[f"{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out
