"""Quality section: every method ranks each set's pool for its queries; a hit is relevant when it has the query's task label.

P@1, P@4, nDCG@10 and MRR@10 per method and set, plus a paired bootstrap 95% interval of each method's P@4
minus BM25's, and P@4 per task on sets with few labels.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np

from pie_retriever.evaluation.bench.cache import EncoderCache
from pie_retriever.evaluation.bench.config import (
    MAX_LABELS_BY_TASK,
    SET_SOURCES,
    SLOW_METHODS,
    BenchConfig,
    Method,
    methods,
    training_sources,
)
from pie_retriever.evaluation.bench.sets import EvalSet
from pie_retriever.evaluation.metrics import mrr, ndcg_at_k, paired_bootstrap, precision_at_k, relevance

__all__ = ["evaluate_ranking", "ranker_for", "run_quality"]


def ranker_for(method: Method, encoders: EncoderCache, show_progress: bool | None) -> Any:
    """The :mod:`pie_retriever.evaluation.rankers` ranker of a method."""
    from pie_retriever.evaluation.rankers import BM25Ranker, EmbeddingRanker, TfidfRanker

    if method.kind == "bm25":
        return BM25Ranker(k1=1.5, b=0.75, stopwords="en")
    if method.kind == "tfidf":
        return TfidfRanker()
    return EmbeddingRanker(encoders.get(method), show_progress=show_progress)


def evaluate_ranking(es: EvalSet, ranked: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of a ranking ``(n_queries, ≥10)`` of pool indices; returns ``(metrics, per-query P@4)``."""
    _, q_labels = es.queries
    n_rel = es.n_relevant()
    keep = n_rel > 0
    labels = np.asarray(es.pool_labels, dtype=object)
    rel = relevance([lab for lab, k in zip(q_labels, keep) if k], labels[ranked[keep]])
    width = rel.shape[1]  # 10 unless the pool is tiny
    metrics = {
        "p@1": precision_at_k(rel, 1),
        "p@4": precision_at_k(rel, min(4, width)),
        "ndcg@10": ndcg_at_k(rel, min(10, width), n_relevant=n_rel[keep]),
        "mrr@10": mrr(rel[:, :10]),
        "n_queries": int(keep.sum()),
        "n_queries_without_relevant": int((~keep).sum()),
    }
    return metrics, rel[:, :4].mean(axis=1)


def _rank(es: EvalSet, ranker: Any) -> np.ndarray:
    k = min(10, len(es.pool_texts) - (1 if es.loo else 0))
    if not es.loo:
        return ranker.rank(es.pool_texts, es.query_texts, k)
    ranked = ranker.rank(es.pool_texts, None, k, loo=True)
    return ranked if es.query_rows is None else ranked[es.query_rows]


def _p4_by_task(es: EvalSet, p4: np.ndarray) -> dict[str, float]:
    kept = [lab for lab, n in zip(es.queries[1], es.n_relevant()) if n > 0]
    by: dict[str, list[float]] = {}
    for lab, v in zip(kept, p4):
        by.setdefault(str(lab), []).append(float(v))
    return {lab: round(float(np.mean(v)), 4) for lab, v in sorted(by.items())}


def _run_method(cfg: BenchConfig, es: EvalSet, name: str, method: Method, encoders: EncoderCache,
                rankings: dict[str, np.ndarray]) -> tuple[dict[str, Any], np.ndarray | None]:
    """One method on one set: ``(metrics or {skipped|error}, per-query P@4 or None)``.

    ``rankings`` maps encoder fingerprints to rankings already computed on this set (identical encoders rank once).
    """
    if name in SLOW_METHODS and cfg.decoder_max_texts is not None and es.n_texts > cfg.decoder_max_texts:
        return {"skipped": f"{es.n_texts:,} texts > --decoder-max-texts {cfg.decoder_max_texts:,} "
                           "(the 135M decoder encodes ~4-10 texts/s on 2 cores)"}, None
    t0 = time.perf_counter()
    try:
        ranker = ranker_for(method, encoders, cfg.show_progress)
    except Exception as exc:  # an optional model (e.g. the decoder) may be missing
        return {"error": f"{type(exc).__name__}: {exc}"}, None
    fp = getattr(getattr(ranker, "encoder", None), "fingerprint", None)
    ranked = rankings[fp] if fp is not None and fp in rankings else _rank(es, ranker)
    if fp is not None:
        rankings[fp] = ranked
    metrics, p4 = evaluate_ranking(es, ranked)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    if SET_SOURCES.get(es.key) in training_sources(method):
        metrics["trained_on_set"] = True  # the model saw these labels in training: not a held-out figure
    if len(set(es.pool_labels)) <= MAX_LABELS_BY_TASK:
        metrics["p@4_by_task"] = _p4_by_task(es, p4)
    return metrics, p4


def _run_set(cfg: BenchConfig, es: EvalSet, all_methods: dict[str, Method], names: Sequence[str], encoders: EncoderCache,
             bar: Any) -> dict[str, Any]:
    per_method: dict[str, Any] = {}
    per_query: dict[str, np.ndarray] = {}
    rankings: dict[str, np.ndarray] = {}
    for name in names:
        bar.set_postfix(set=es.key, method=name)
        per_method[name], p4 = _run_method(cfg, es, name, all_methods[name], encoders, rankings)
        if p4 is not None:
            per_query[name] = p4
        bar.update(1)
    if "bm25" in per_query:
        for name, p4 in per_query.items():
            if name != "bm25":
                diff = paired_bootstrap(p4, per_query["bm25"], seed=cfg.seed)
                per_method[name]["p@4_minus_bm25"] = {k: round(v, 4) for k, v in diff.items()}
    return {
        "description": es.description, "protocol": "leave-one-out" if es.loo else "pool→query",
        "n_pool": len(es.pool_texts), "n_labels": len(set(es.pool_labels)), "n_queries": len(es.queries[0]),
        "results": per_method,
    }


def run_quality(cfg: BenchConfig, sets: Sequence[EvalSet], encoders: EncoderCache | None = None) -> dict[str, Any]:
    """Rank every set with every method and score same-task matches."""
    from tqdm.auto import tqdm

    from pie_retriever.encoders.models import DEFAULT_MODEL

    encoders = encoders or EncoderCache()
    all_methods = methods()
    names = list(cfg.method_names)
    out: dict[str, Any] = {"methods": {n: asdict(all_methods[n]) for n in names}, "sets": {}}
    disable = None if cfg.show_progress is not False else True
    bar = tqdm(total=len(names) * len(sets), desc="Quality", unit="run", disable=disable)
    for es in sets:
        out["sets"][es.key] = _run_set(cfg, es, all_methods, names, encoders, bar)
    bar.close()
    out["default_model"] = DEFAULT_MODEL  # the default model may be the very same encoder as another method
    return out
