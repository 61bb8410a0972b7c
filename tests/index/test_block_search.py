"""Batched exact search over fp16/int8 storage by blocks of decoded vectors (BLAS), against faiss' own scan."""

import numpy as np
import pytest

from pie_retriever.encoders.base import l2_normalize
from pie_retriever.index import block_search as bs
from pie_retriever.index import create_index
from pie_retriever.index.base import exact_topk

#: |score from the block path - score from faiss' scan| (same decoded values, another summation order).
SCORE_ATOL = 1e-5


def _data(n=3000, d=48, seed=0):
    rng = np.random.default_rng(seed)
    x = l2_normalize(rng.normal(size=(n, d)).astype(np.float32))
    q = l2_normalize(x[np.arange(64) % n] + 0.3 * rng.normal(size=(64, d)).astype(np.float32))
    return x, q


def _both_paths(index, q, k, allowed=None):
    block = index.search(q, k, allowed=allowed)
    index.block_min_queries = 2**62
    try:
        scan = index.search(q, k, allowed=allowed)
    finally:
        index.block_min_queries = bs.BLOCK_MIN_QUERIES
    return block, scan


@pytest.mark.parametrize("vectors", ["fp16", "int8"])
def test_block_path_matches_faiss_scan(vectors, monkeypatch):
    monkeypatch.setattr(bs, "BLOCK_BYTES", 4 * 48 * 1024)  # 1,024 rows per block: three blocks and a partial one
    x, q = _data()
    ids = np.arange(3000, dtype=np.int64) * 3 + 11
    index = create_index(48, "flat", vectors=vectors)
    index.add(ids, x)
    (bs_scores, bs_ids), (sc_scores, sc_ids) = _both_paths(index, q, 10)
    assert bs_scores.shape == (64, 10) and np.isin(bs_ids, ids).all()
    np.testing.assert_allclose(bs_scores, sc_scores, atol=SCORE_ATOL)
    same = (bs_ids == sc_ids) | np.isclose(bs_scores, sc_scores, atol=SCORE_ATOL)  # ids may swap only on ties
    assert same.all()
    assert (np.diff(bs_scores, axis=1) <= 0).all()  # best first


def test_block_path_with_filter_and_after_remove():
    x, q = _data()
    ids = np.arange(3000, dtype=np.int64)
    index = create_index(48, "flat", vectors="fp16")
    index.add(ids, x)
    index.remove(ids[:100])
    allowed = ids[100::9]
    (b_scores, b_ids), (s_scores, s_ids) = _both_paths(index, q, 5, allowed=allowed)
    truth_scores, truth_ids = exact_topk(x[100::9], allowed, q, 5)
    assert np.isin(b_ids, allowed).all() and np.isin(s_ids, allowed).all()
    np.testing.assert_allclose(b_scores, truth_scores, atol=2e-3)  # fp16 storage vs exact fp32 cosines
    np.testing.assert_allclose(b_scores, s_scores, atol=SCORE_ATOL)
    _, unfiltered = index.search(q, 5)
    assert not np.isin(unfiltered, ids[:100]).any()


def test_block_path_fewer_vectors_than_k():
    x, q = _data(n=3)
    index = create_index(48, "flat", vectors="int8")
    index.add(np.array([5, 6, 7]), x)
    scores, got = index.search(q, 6)
    assert (got[:, :3] >= 5).all() and (got[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()


def test_block_path_keeps_storage_memory():
    """No permanent fp32 copy: after a batched search the index holds only its codes."""
    x, q = _data(n=2000)
    index = create_index(48, "flat", vectors="fp16")
    index.add(np.arange(2000), x)
    index.search(q, 4)
    inner = index._storage()
    assert inner.code_size == 48 * 2 and inner.codes.size() == 2000 * 48 * 2
    assert not [name for name, value in vars(index).items() if isinstance(value, np.ndarray) and value.dtype == np.float32]


@pytest.mark.parametrize("vectors", ["fp32", "fp16", "int8"])
def test_large_batch_through_faiss_knn_matches_scan(vectors):
    """From KNN_MIN_QUERIES queries on, each block goes through faiss.knn; same results as the scan."""
    x, q = _data()
    q = np.ascontiguousarray(np.resize(q, (bs.KNN_MIN_QUERIES + 8, 48)))
    index = create_index(48, "flat", vectors=vectors)
    index.add(np.arange(3000), x)
    allowed = np.arange(0, 3000, 4)
    for flt in (None, allowed):
        (b_scores, b_ids), (s_scores, s_ids) = _both_paths(index, q, 6, allowed=flt)
        np.testing.assert_allclose(b_scores, s_scores, atol=SCORE_ATOL)
        assert ((b_ids == s_ids) | np.isclose(b_scores, s_scores, atol=SCORE_ATOL)).all()
        if flt is not None:
            assert np.isin(b_ids, allowed).all()
