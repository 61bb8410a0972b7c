"""Exact inner-product index in numpy: no faiss involved (a reference and a choice for tiny pools)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import VectorIndex, exact_topk


class NumpyIndex(VectorIndex):
    kind = "numpy"

    def __init__(self, dim: int) -> None:
        self._dim = int(dim)
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, self._dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._vectors = np.concatenate([self._vectors, np.asarray(vectors, dtype=np.float32)])

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self._ids, ids)
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            return exact_topk(self._vectors, self._ids, queries, k)
        mask = np.isin(self._ids, allowed)
        return exact_topk(self._vectors[mask], self._ids[mask], queries, k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        pos = {int(i): n for n, i in enumerate(self._ids)}
        return self._vectors[[pos[int(i)] for i in ids]]

    def save(self, folder: Path) -> list[str]:
        np.save(folder / "vectors.npy", self._vectors, allow_pickle=False)
        np.save(folder / "ids.npy", self._ids, allow_pickle=False)
        return ["vectors.npy", "ids.npy"]

    @classmethod
    def load(cls, folder: Path, dim: int, options: dict) -> NumpyIndex:
        index = cls(dim)
        index._vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        index._ids = np.load(folder / "ids.npy", allow_pickle=False)
        return index
