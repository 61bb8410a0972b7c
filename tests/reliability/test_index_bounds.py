"""Issue 25.6, the index parts: int8 ranges that a later add falls outside, and hnsw returning k hits."""

import logging

import numpy as np
import pytest

from pie_retriever.encoders.base import l2_normalize
from pie_retriever.evaluation.bench.storage import exact_neighbours, recall_at_k
from pie_retriever.index import create_index


def _clustered(n, d, centre_seed, seed):
    rng = np.random.default_rng(seed)
    centre = l2_normalize(np.random.default_rng(centre_seed).normal(size=(1, d)).astype(np.float32))
    return l2_normalize(centre + 0.15 * rng.normal(size=(n, d)).astype(np.float32))


def test_int8_later_add_outside_ranges_retrains_and_keeps_recall(caplog):
    d = 32
    first = _clustered(300, d, centre_seed=1, seed=2)  # a narrow first batch: ranges fit one region only
    later = _clustered(700, d, centre_seed=3, seed=4)  # another region, mostly outside those ranges
    index = create_index(d, "flat", vectors="int8")
    index.add(np.arange(300), first)
    with caplog.at_level(logging.WARNING, logger="pie_retriever.index.faiss_index"):
        index.add(np.arange(300, 1000), later)
    assert any("fall outside them" in r.getMessage() and "retraining the ranges" in r.getMessage() for r in caplog.records)
    assert len(index) == 1000 and sorted(index.ids().tolist()) == list(range(1000))
    x = np.concatenate([first, later])
    queries = l2_normalize(later[:100] + 0.05 * np.random.default_rng(5).normal(size=(100, d)).astype(np.float32))
    recall = recall_at_k(index.search(queries, 5)[1], exact_neighbours(x, queries, 5))
    assert recall >= 0.9  # clipped to the first batch's ranges it was 0.66-0.79 in the probe


def test_int8_later_add_inside_ranges_does_not_retrain(caplog):
    d = 32
    x = _clustered(1000, d, centre_seed=1, seed=2)
    index = create_index(d, "flat", vectors="int8")
    index.add(np.arange(600), x[:600])
    before = index.index
    with caplog.at_level(logging.WARNING, logger="pie_retriever.index.faiss_index"):
        index.add(np.arange(600, 1000), x[600:])
    assert index.index is before and not caplog.records


@pytest.mark.parametrize("vectors", ["fp32", "fp16", "int8"])
def test_hnsw_small_ef_search_returns_k_hits(vectors):
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(2000, 32)).astype(np.float32))
    index = create_index(32, "hnsw", ef_search=1, hnsw_m=4, vectors=vectors)
    index.add(np.arange(2000), x)
    _, got = index.search(x[:40], 50)
    assert ((got >= 0).sum(axis=1) == 50).all()
    assert all(len(set(row.tolist())) == 50 for row in got)
    index.remove(np.arange(0, 2000, 3))  # tombstones make the graph walk shorter still
    _, got = index.search(x[:40], 50)
    assert ((got >= 0).sum(axis=1) == 50).all() and not np.isin(got, np.arange(0, 2000, 3)).any()


def test_hnsw_filter_returns_k_of_the_allowed():
    rng = np.random.default_rng(1)
    x = l2_normalize(rng.normal(size=(3000, 32)).astype(np.float32))
    index = create_index(32, "hnsw", ef_search=4, vectors="fp16")
    index.add(np.arange(3000), x)
    for allowed in (np.arange(0, 3000, 100), np.arange(0, 3000, 2)):  # exact over few; graph + selector over many
        _, got = index.search(x[:10], 20, allowed=allowed)
        assert ((got >= 0).sum(axis=1) == 20).all() and np.isin(got, allowed).all()
