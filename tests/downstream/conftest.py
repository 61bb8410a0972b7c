from __future__ import annotations

import numpy as np
import pytest


def blobs(n_clusters: int = 10, per: int = 20, dim: int = 16, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Unit vectors in ``n_clusters`` tight, well separated groups; labels ``t0``, ``t1``, ..."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim))
    x = np.concatenate([c + spread * rng.standard_normal((per, dim)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = [f"t{i}" for i in range(n_clusters) for _ in range(per)]
    return x, labels


@pytest.fixture
def clustered():
    return blobs()
