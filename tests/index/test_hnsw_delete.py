"""HNSW deletes are tombstones (no graph rebuild per call), compacted once a quarter of the graph is deleted."""

from __future__ import annotations

import numpy as np

from pie_retriever.index import create_index, load_index


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_delete_marks_and_search_skips(tmp_path):
    index = create_index(16, "hnsw")
    v = _unit(400)
    index.add(np.arange(400, dtype=np.int64), v)
    graph = index.index
    index.remove(np.array([0, 1, 2], dtype=np.int64))
    assert index.index is graph  # not rebuilt
    assert len(index) == 397 and not {0, 1, 2} & set(index.ids().tolist())
    scores, ids = index.search(v[:3], 5)
    assert not {0, 1, 2} & set(ids.ravel().tolist()) and (ids >= 0).all()
    # tombstones survive save/load
    files = index.save(tmp_path)
    assert "deleted.npy" in files
    loaded = load_index(tmp_path, "hnsw", 16, index.options())
    assert len(loaded) == 397
    assert not {0, 1, 2} & set(loaded.search(v[:3], 5)[1].ravel().tolist())


def test_compaction_at_a_quarter():
    index = create_index(16, "hnsw")
    v = _unit(400, seed=1)
    index.add(np.arange(400, dtype=np.int64), v)
    graph = index.index
    index.remove(np.arange(99, dtype=np.int64))
    assert index.index is graph and len(index) == 301
    index.remove(np.array([99], dtype=np.int64))  # 100 of 400 = 25 %: rebuilt without them
    assert index.index is not graph and int(index.index.ntotal) == 300 and len(index) == 300
    exact = v[100:] @ v[150]
    assert index.search(v[150:151], 1)[1][0, 0] == 100 + int(np.argmax(exact))
