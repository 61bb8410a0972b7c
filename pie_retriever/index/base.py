"""The index stage: int64 ids → unit vectors, searched by inner product (= cosine)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class VectorIndex(ABC):
    """Smallest surface an index needs. Ids are int64 labels chosen by the caller and survive deletes.

    ``search`` returns ``(scores, ids)`` of shape (n_queries, k); missing slots have id -1 and score -inf.
    ``allowed`` restricts the search to those ids (metadata filters); it must still return the best k
    among them.
    """

    kind: str

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (used by MMR)."""

    @abstractmethod
    def save(self, folder: Path) -> list[str]:
        """Write the index into ``folder``; return the file names written."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, dim: int, options: dict) -> VectorIndex: ...

    def options(self) -> dict:
        """Constructor options stored in the manifest."""
        return {}


def exact_topk(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product with numpy."""
    nq = queries.shape[0]
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    if len(ids) == 0:
        return scores, out_ids
    sims = queries @ vectors.T
    kk = min(k, len(ids))
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    scores[:, :kk] = np.take_along_axis(sims, top, axis=1)
    out_ids[:, :kk] = ids[top]
    return scores, out_ids
