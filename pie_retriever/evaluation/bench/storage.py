"""Vector storage options (``index_options={"vectors": ...}``): bytes, recall@k against exact fp32 search, speed.

:func:`storage_rows` builds a faiss index of each kind × storage over the same unit vectors and reports, for each,
the bytes per vector of the saved ``index.faiss``, recall@k of a batched search against an exact fp32 search
(share of the true k nearest found), single-query search latency and batched queries/s, and optionally the
RSS a whole retriever keeps per demonstration (built in a fresh process by :func:`~.memory.memory_probe`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever._util import DEFAULT_K
from pie_retriever.index.faiss_index import VECTOR_STORAGE

__all__ = ["STORAGES", "TIE_TOLERANCE", "exact_neighbours", "recall_at_k", "recall_at_k_with_ties", "storage_rows"]

#: A found neighbour whose exact cosine is within this of the true k-th one is a tie, not a miss (near-duplicate
#: demonstrations whose order fp32 rounding could flip as well).
TIE_TOLERANCE = 1e-4

STORAGES = tuple(VECTOR_STORAGE)
#: Batched searches timed per row (the best is kept).
BATCH_REPEATS = 3


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids (row numbers) of the exact top-``k`` by inner product, fp32 (faiss IndexFlatIP)."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k."""
    k = truth.shape[1]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def recall_at_k_with_ties(found: np.ndarray, truth: np.ndarray, vectors: np.ndarray, queries: np.ndarray,
                          tol: float = TIE_TOLERANCE) -> float:
    """Like :func:`recall_at_k`, counting a found id as right when its exact score is within ``tol`` of the true k-th."""
    kth = np.sum(queries * vectors[truth[:, -1]], axis=1)
    scores = np.einsum("qd,qkd->qk", queries, vectors[np.clip(found, 0, None)])
    return float(np.mean((scores >= kth[:, None] - tol) & (found >= 0)))


def _timed_single(index: Any, queries: np.ndarray, k: int) -> dict[str, float]:
    for q in queries[:3]:
        index.search(q[None, :], k)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def _batched_seconds(index: Any, queries: np.ndarray, k: int) -> tuple[float, float | None]:
    """Best-of-``BATCH_REPEATS`` seconds of one batched search, and, for a flat index with a block path, the same with
    faiss' own scan (the path before block search), interleaved so both see the same machine load."""
    block = getattr(index, "block_min_queries", None)
    best, scan = float("inf"), None if block is None else float("inf")
    for _ in range(BATCH_REPEATS):  # best of a few: one batched call is short and a shared machine is noisy
        t0 = time.perf_counter()
        index.search(queries, k)
        best = min(best, time.perf_counter() - t0)
        if scan is not None:
            index.block_min_queries = 2**62
            try:
                t0 = time.perf_counter()
                index.search(queries, k)
                scan = min(scan, time.perf_counter() - t0)
            finally:
                index.block_min_queries = block
    return best, scan


def _row(kind: str, storage: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int, n_single: int) -> dict[str, Any]:
    from pie_retriever.index import create_index

    ids = np.arange(len(vectors), dtype=np.int64)
    index = create_index(vectors.shape[1], kind, vectors=storage)
    t0 = time.perf_counter()
    index.add(ids, vectors)
    build_s = time.perf_counter() - t0
    batch_s, scan_s = _batched_seconds(index, queries, k)
    found = index.search(queries, k)[1]
    scan_recall = None
    if scan_s is not None:
        index.block_min_queries, block = 2**62, index.block_min_queries
        scan_recall = recall_at_k(index.search(queries, k)[1], truth)
        index.block_min_queries = block
    tmp = Path(tempfile.mkdtemp(prefix="pie-storage-"))
    try:
        index.save(tmp)
        file_bytes = (tmp / "index.faiss").stat().st_size
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"kind": kind, "vectors": storage, "n": len(vectors), "index_file_bytes_per_vector": file_bytes / len(vectors),
            f"recall_at_{k}": recall_at_k(found, truth), f"recall_at_{k}_with_ties": recall_at_k_with_ties(found, truth, vectors, queries),
            "build_s": build_s, "batched_queries_per_s": len(queries) / batch_s,
            "batched_queries_per_s_faiss_scan": None if scan_s is None else len(queries) / scan_s,
            f"recall_at_{k}_faiss_scan": scan_recall,
            "single": _timed_single(index, queries[:n_single], k)}


def storage_rows(vectors: np.ndarray, queries: np.ndarray, *, kinds: Sequence[str] = ("flat", "hnsw"),
                 storages: Sequence[str] = STORAGES, k: int = DEFAULT_K, n_single: int = 100,
                 texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per kind × storage over the same ``vectors`` and ``queries`` (see the module docstring).

    With ``texts`` (one per vector) each row also gets ``rss_bytes_per_demo``: the resident memory a whole
    retriever with that index keeps per demonstration, built in a fresh process."""
    from pie_retriever.evaluation.bench.memory import memory_probe

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    truth = exact_neighbours(vectors, queries, k)
    rows = []
    for kind in kinds:
        for storage in storages:
            row = _row(kind, storage, vectors, queries, truth, k, n_single)
            if texts is not None:
                got = memory_probe("pie", texts, vectors, index={"kind": kind, "options": {"vectors": storage}})
                row["rss_bytes_per_demo"] = got["retained"] / len(vectors)
            rows.append(row)
    return rows
