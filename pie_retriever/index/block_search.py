"""Batched exact search over scalar-quantizer storage (fp16, int8) at BLAS speed, block by block.

faiss scores a batch of queries against scalar-quantizer codes one vector at a time, 3–8× slower than fp32 flat
storage for large batches (and faiss 1.15 uses BLAS even for fp32 only from some hundreds of queries on). :func:`block_search` decodes the codes in
blocks of :data:`BLOCK_BYTES` of fp32 (``sa_decode``, exactly the values the scalar quantizer scores with), scores
each block with BLAS (a numpy matrix product) and keeps the top-k in faiss' C++ heaps (``float_minheap_array_t``;
``faiss.knn`` would fall back to its scan below some hundreds of queries). Only one block is decoded at a time:
the index keeps the memory of its storage. Used for batches of at least :data:`BLOCK_MIN_QUERIES` queries; smaller
batches keep faiss' own scan, which is faster for them (the crossover measured in docs/speed.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BLOCK_BYTES", "BLOCK_MIN_QUERIES", "block_search"]

#: fp32 bytes decoded at once (24 MiB: 16,384 vectors of 384 dims).
BLOCK_BYTES = 24 * 2**20
#: Batches of at least this many queries take the block path; below it faiss' own scan is faster (the crossover
#: measured by benchmarks/index_speed.py, docs/speed.md: 32–64 queries at 10k and 100k vectors).
BLOCK_MIN_QUERIES = 64
#: From this many queries on, each block goes through ``faiss.knn`` (which then runs BLAS itself, tiled); below it
#: through one numpy product (faiss' knn would fall back to its scan).
KNN_MIN_QUERIES = 512


def _codes(inner: Any, faiss: Any) -> np.ndarray:
    """The index's codes as an (ntotal, code_size) uint8 view (no copy)."""
    n, size = int(inner.ntotal), int(inner.code_size)
    if n == 0:
        return np.zeros((0, size), dtype=np.uint8)
    return faiss.rev_swig_ptr(inner.codes.data(), n * size).reshape(n, size)


def block_search(faiss: Any, inner: Any, labels: np.ndarray, queries: np.ndarray, k: int,
                 keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product over the vectors of ``inner`` (an ``IndexScalarQuantizer`` or any index with
    ``codes`` and ``sa_decode``): ``(scores, ids)`` of shape (nq, k), best first, ids from ``labels`` (the
    ``IndexIDMap2`` id of each stored row), -1 / -inf where fewer than ``k`` vectors qualify. ``keep``: a bool per
    stored row; only those rows are searched (a filter)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    codes = _codes(inner, faiss)
    n, nq, dim = len(codes), len(queries), queries.shape[1]
    step = max(1024, BLOCK_BYTES // (4 * dim))
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    rows = np.full((nq, k), -1, dtype=np.int64)
    heaps = faiss.float_minheap_array_t()  # k best (largest) scores per query, kept in C++
    heaps.k, heaps.nh, heaps.val, heaps.ids = k, nq, faiss.swig_ptr(scores), faiss.swig_ptr(rows)
    heaps.heapify()
    for i0 in range(0, n, step):
        picked = np.arange(i0, min(n, i0 + step), dtype=np.int64)
        if keep is not None:
            picked = picked[keep[i0:i0 + step]]
        if not len(picked):
            continue
        block = inner.sa_decode(np.ascontiguousarray(codes[i0:i0 + step] if keep is None else codes[picked]))
        if nq >= KNN_MIN_QUERIES:  # faiss' own BLAS + heap, tiled for the cache
            scores_b, found = faiss.knn(queries, block, min(k, len(picked)), metric=faiss.METRIC_INNER_PRODUCT)
            ids_b = np.ascontiguousarray(picked[found])
            heaps.addn_with_ids(found.shape[1], faiss.swig_ptr(scores_b), faiss.swig_ptr(ids_b), found.shape[1], 0, nq)
        else:
            sims = np.ascontiguousarray(queries @ block.T)  # BLAS
            heaps.addn_with_ids(len(picked), faiss.swig_ptr(sims), faiss.swig_ptr(picked), 0, 0, nq)
    heaps.reorder()  # best first
    found = rows >= 0
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    out_ids[found] = labels[rows[found]]
    return np.where(found, scores, -np.inf).astype(np.float32), out_ids
