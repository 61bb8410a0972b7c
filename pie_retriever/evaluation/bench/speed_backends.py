"""Speed section rows per query backend × vector storage, on an idle and on a loaded machine.

For each backend (the default torch encoder with its thread/precision policy, and the default model's int8 ONNX
export) and each storage option (``index_options={"vectors": ...}``), a retriever over the same pool answers
single queries (encode + search, p50/p99) idle and then under a CPU hog (``hog`` busy-loop processes:
:func:`~pie_retriever.evaluation.bench.load.cpu_hog`), and a batch; recall@k is measured against exact fp32 search over
the same document vectors.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pie_retriever._util import DEFAULT_K
from pie_retriever.evaluation.bench.config import BACKENDS
from pie_retriever.evaluation.bench.load import cpu_hog, load_average
from pie_retriever.evaluation.bench.storage import STORAGES, exact_neighbours, recall_at_k
from pie_retriever.evaluation.bench.timing import PrecomputedEncoder, batched_qps, latency_stats

__all__ = ["BACKENDS", "backend_encoders", "run_backends"]

def backend_encoders(default_encoder: Any, names: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``({name: encoder}, {name: why it was skipped})`` for the requested backends."""
    out, skipped = {"torch": default_encoder} if "torch" in names else {}, {}
    if "onnx-int8" in names:
        try:
            from pie_retriever.encoders.onnx import OnnxEncoder
            from pie_retriever.encoders.onnx_export import cached_export

            out["onnx-int8"] = OnnxEncoder(cached_export(default_encoder.model_spec, "int8"))
        except ImportError as exc:  # the onnx extra is not installed
            skipped["onnx-int8"] = f"{type(exc).__name__}: {exc}"
    return out, skipped


def _latency(fn: Any, queries: Sequence[str]) -> dict[str, float]:
    """p50/p99 ms of ``fn(q)`` one query at a time, after two warm-up calls."""
    stats = latency_stats(fn, queries, warmup=2)
    return {"p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "n": stats["n"]}


def run_backends(default_encoder: Any, texts: Sequence[str], vectors: np.ndarray, single_q: Sequence[str], batch_q: Sequence[str], *,
                 backends: Sequence[str] = tuple(BACKENDS), storages: Sequence[str] = STORAGES,
                 hog: int = 2, k: int = DEFAULT_K) -> dict[str, Any]:
    """One row per backend × storage over ``texts`` with document ``vectors`` (see the module docstring)."""
    from pie_retriever.retrieval.retriever import PIERetriever

    encoders, skipped = backend_encoders(default_encoder, backends)
    qv = default_encoder.encode_queries(list(batch_q), show_progress=False)
    truth = exact_neighbours(vectors, qv, k)
    demos = [{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)]
    retrievers: dict[tuple[str, str], Any] = {}
    rows: list[dict[str, Any]] = []
    for name, enc in encoders.items():
        for storage in storages:
            r = PIERetriever.from_demonstrations(demos, PrecomputedEncoder(enc, vectors), show_progress=False,
                                                 index_options={"vectors": storage})
            retrievers[name, storage] = r
            found = r.index.search(qv, k)[1]
            rows.append({"backend": name, "vectors": storage, "n": len(texts), f"recall_at_{k}": recall_at_k(found, truth),
                         "single_idle": _latency(lambda q, r=r: r.retrieve(q, k=k), single_q),
                         "batched": batched_qps(lambda qs, r=r: r.retrieve_batch(qs, k=k), list(batch_q))})
    out: dict[str, Any] = {"n": len(texts), "k": k, "hog_processes": hog, "load_idle": load_average(), "skipped": skipped,
                           "backends": {n: BACKENDS[n] for n in encoders}}
    with cpu_hog(hog, max_seconds=900):
        out["load_loaded_start"] = load_average()
        for row in rows:
            r = retrievers[row["backend"], row["vectors"]]
            row["single_loaded"] = _latency(lambda q, r=r: r.retrieve(q, k=k), single_q)
        out["load_loaded_end"] = load_average()
    out["rows"] = rows
    return out
