"""Filtered search speed: single-query ``retrieve`` p50 with and without a metadata filter, same retriever, same run.

:func:`filter_rows` builds a :class:`~pie_retriever.retrieval.retriever.PIERetriever` over stored vectors (no
encoding: documents and queries are replayed), gives every demonstration ``{"task": "t<i mod 50>", "level":
i mod 3}`` and times ``retrieve(q, k)`` one query at a time with no filter, a filter that passes everything
(``{"level": [0, 1, 2]}``), one that passes a third (``{"level": 1}``) and one that passes 2 % (``{"task":
"t7"}``). The ratio of each filtered p50 to the unfiltered one is what the filter costs.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pie_retriever._util import DEFAULT_K
from pie_retriever.encoders.base import DelegatingEncoder
from pie_retriever.evaluation.bench.timing import latency_stats

__all__ = ["FILTERS", "VectorReplayEncoder", "filter_rows"]

#: name -> filter spec, over the metadata :func:`filter_rows` gives each demonstration.
FILTERS: dict[str, Any] = {
    "none": None,
    "passes all (level in [0, 1, 2])": {"level": [0, 1, 2]},
    "passes 1/3 (level = 1)": {"level": 1},
    "passes 2 % (task = t7)": {"task": "t7"},
}


class VectorReplayEncoder(DelegatingEncoder):
    """Documents get ``doc_vectors`` in order; a query text ``"q<i>"`` gets ``query_vectors[i]`` (no model runs)."""

    def __init__(self, inner: Any, doc_vectors: np.ndarray, query_vectors: np.ndarray) -> None:
        super().__init__(inner)
        self._docs = np.ascontiguousarray(doc_vectors, dtype=np.float32)
        self._queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
        self._pos = 0

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        v = self._docs[self._pos:self._pos + len(texts)]
        self._pos += len(texts)
        return v

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        return self._queries[[int(t[1:]) for t in texts]]


def filter_rows(inner: Any, vectors: np.ndarray, query_vectors: np.ndarray, *, k: int = DEFAULT_K,
                n_queries: int = 200, index: str = "flat", vectors_option: str | None = None) -> dict[str, Any]:
    """p50/p99 ms of single-query ``retrieve`` under each of :data:`FILTERS` over ``vectors`` (one pool).

    ``inner`` supplies the dim, fingerprint and config (any encoder of ``vectors``' dim; it never encodes)."""
    from pie_retriever.retrieval.retriever import PIERetriever

    n = len(vectors)
    demos = [{"id": f"d{i}", "instruction": f"demo {i}", "metadata": {"task": f"t{i % 50}", "level": i % 3}} for i in range(n)]
    options = {} if vectors_option is None else {"vectors": vectors_option}
    r = PIERetriever.from_demonstrations(demos, VectorReplayEncoder(inner, vectors, query_vectors), index=index,
                                         index_options=options, content_weight=0.0, content_scorer=None, show_progress=False)
    queries = [f"q{i}" for i in range(min(n_queries, len(query_vectors)))]
    rows: dict[str, Any] = {}
    for name, spec in FILTERS.items():
        stats = latency_stats(lambda q, spec=spec: r.retrieve(q, k=k, filter=spec), queries)
        hits = r.retrieve(queries[0], k=k, filter=spec)
        rows[name] = {"p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "hits": len(hits)}
    base = rows["none"]["p50_ms"]
    for row in rows.values():
        row["ratio_to_unfiltered"] = row["p50_ms"] / base
    return {"n": n, "index": index, "vectors": vectors_option or "default", "k": k, "queries": len(queries), "rows": rows}
