"""How far to trust ``pie-retriever tasks``: purity of each cluster against the pool's own task labels where they
exist, low-purity names flagged, and a warning when the pool is too small for the number of clusters."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

__all__ = ["LOW_PURITY", "MIN_PER_CLUSTER", "annotate", "notes"]

#: A cluster whose name (majority ``verb|noun``) covers less than this share of it is flagged: the name is a guess.
LOW_PURITY = 0.5
#: Fewer instructions per cluster than this on average: sizes, names and the silhouette choice are noise-driven.
MIN_PER_CLUSTER = 10


def annotate(result: dict[str, Any], gold: Sequence[str | None] | None) -> dict[str, Any]:
    """Add ``low_purity`` to every cluster of a :func:`~pie_retriever.downstream.tasks.discover_tasks` result and,
    when ``gold`` (one label or None per row) has labels, ``gold_label``/``gold_purity`` per cluster and
    ``result["gold"] = {"labels", "labelled", "purity"}`` (size-weighted purity over the labelled rows)."""
    for cluster in result["clusters"]:
        cluster["low_purity"] = cluster["purity"] < LOW_PURITY
    if not gold or not any(gold):
        return result
    rows: dict[int, list[str]] = {}
    for cluster_id, label in zip(result["assign"], gold):
        if label:
            rows.setdefault(int(cluster_id), []).append(str(label))
    hits = 0
    for cluster in result["clusters"]:
        labels = rows.get(int(cluster["cluster"]), [])
        top, count = Counter(labels).most_common(1)[0] if labels else (None, 0)
        cluster["gold_label"], cluster["gold_purity"] = top, round(count / len(labels), 4) if labels else None
        hits += count
    labelled = sum(len(v) for v in rows.values())
    result["gold"] = {"labels": len({str(g) for g in gold if g}), "labelled": labelled, "purity": round(hits / labelled, 4)}
    return result


def notes(result: dict[str, Any]) -> list[str]:
    """One line per caveat of an annotated result: too small a pool, low-purity names, purity against gold labels."""
    out = []
    n, k = result["n"], result["k"]
    if k and n / k < MIN_PER_CLUSTER:
        out.append(f"note: {n} instructions are few for {k} clusters ({n / k:.1f} per cluster; below {MIN_PER_CLUSTER} "
                   "sizes, names and the silhouette's choice of k are mostly noise): use a bigger pool or pass --clusters N.")
    low = [c["name"] for c in result["clusters"] if c.get("low_purity")]
    if low:
        out.append(f"note: {len(low)} of {k} names (marked !) cover less than {LOW_PURITY:.0%} of their cluster: treat them "
                   f"as guesses ({', '.join(low[:5])}{', ...' if len(low) > 5 else ''}).")
    gold = result.get("gold")
    if gold:
        out.append(f"against the pool's own task labels ({gold['labels']} tasks, {gold['labelled']} of {n} rows labelled): "
                   f"purity {gold['purity']:.2f} (the gold column: each cluster's share of its most common label).")
    return out
