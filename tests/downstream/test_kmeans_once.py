"""k-means is one faiss Kmeans of `niter` iterations, not 20 rebuilt runs of one (issue 29 item 10)."""

from __future__ import annotations

import faiss
import numpy as np

from pie_retriever.downstream.clustering import kmeans


def test_one_faiss_kmeans_with_all_iterations(monkeypatch):
    built = []
    real = faiss.Kmeans

    class Counting(real):
        def __init__(self, d, k, **kw):
            super().__init__(d, k, **kw)
            built.append(self)

    monkeypatch.setattr(faiss, "Kmeans", Counting)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    x = np.concatenate([c + 0.05 * rng.normal(size=(30, 16)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    result = kmeans(x, 4, niter=20)
    assert len(built) == 1 and built[0].cp.niter == 20
    assert sorted(np.bincount(result.assign).tolist()) == [30, 30, 30, 30]
