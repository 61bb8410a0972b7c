"""faiss inner-product index: exact ``flat`` (default) or approximate ``hnsw``, behind ``IndexIDMap2``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import IndexLoadError
from .base import VectorIndex, exact_topk

INDEX_FILE = "index.faiss"


class FaissIndex(VectorIndex):
    """faiss index with caller-chosen int64 ids.

    ``flat`` is exact. ``hnsw`` (``hnsw_m`` links per node, ``ef_search`` breadth) is approximate and faster
    on large pools; faiss HNSW cannot delete, so ``remove`` rebuilds it from the stored vectors.
    """

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 64, ef_construction: int = 80) -> None:
        import faiss  # a core dependency (faiss-cpu)

        self.faiss = faiss
        self._dim = int(dim)
        self.kind = kind
        self.hnsw_m, self.ef_search, self.ef_construction = hnsw_m, ef_search, ef_construction
        self.index = self._new()

    def _new(self):
        faiss = self.faiss
        if self.kind == "flat":
            inner = faiss.IndexFlatIP(self._dim)
        else:
            inner = faiss.IndexHNSWFlat(self._dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.ef_search
            inner.hnsw.efConstruction = self.ef_construction
        return faiss.IndexIDMap2(inner)

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def options(self) -> dict:
        if self.kind == "flat":
            return {}
        return {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "ef_construction": self.ef_construction}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "flat":
            self.index.remove_ids(ids)
            return
        all_ids = self.faiss.vector_to_array(self.index.id_map).astype(np.int64)
        keep = all_ids[~np.isin(all_ids, ids)]
        vectors = self.reconstruct(keep) if len(keep) else np.zeros((0, self._dim), dtype=np.float32)
        self.index = self._new()
        if len(keep):
            self.add(keep, vectors)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(self)
        if n == 0:
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64))
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=np.int64)
            # A filtered search must still return min(k, |allowed|) hits: exact search over the allowed vectors
            # is both correct and fast for the sizes a filter leaves.
            return exact_topk(self.reconstruct(allowed), allowed, queries, k)
        scores, ids = self.index.search(queries, min(k, n))
        if k > n:
            pad = k - n
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        self.faiss.write_index(self.index, str(folder / INDEX_FILE))
        return [INDEX_FILE]

    @classmethod
    def load(cls, folder: Path, dim: int, options: dict, kind: str = "flat") -> FaissIndex:
        index = cls(dim, kind=kind, **options)
        index.index = index.faiss.read_index(str(folder / INDEX_FILE))
        if index.index.d != dim:
            msg = f"{folder / INDEX_FILE} holds {index.index.d}-d vectors but the manifest says dim={dim}."
            raise IndexLoadError(msg)
        if kind == "hnsw":
            index.faiss.downcast_index(index.index.index).hnsw.efSearch = index.ef_search
        return index
