"""faiss inner-product index: exact ``flat`` (default) or approximate ``hnsw``, behind ``IndexIDMap2``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError, IndexLoadError
from .base import VectorIndex, exact_topk, int_option, pad_results

INDEX_FILE = "index.faiss"
DELETED_FILE = "deleted.npy"
#: An HNSW graph is rebuilt without its deleted nodes once they are this share of it.
COMPACT_RATIO = 0.25


class FaissIndex(VectorIndex):
    """faiss index with caller-chosen int64 ids.

    ``flat`` is exact. ``hnsw`` (``hnsw_m`` links per node, ``ef_search`` breadth) is approximate and faster
    on large pools. faiss cannot remove nodes from an HNSW graph, so ``remove`` marks ids deleted (searches
    skip them through an ID selector) and rebuilds the graph only once a quarter of it is deleted: deleting
    is O(1) per id instead of a rebuild per call.
    """

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 64, ef_construction: int = 80) -> None:
        import faiss  # a core dependency (faiss-cpu)

        self.faiss = faiss
        self._dim = int(dim)
        self.kind = kind
        self.hnsw_m, self.ef_search, self.ef_construction = hnsw_m, ef_search, ef_construction
        self.index = self._new()
        self._deleted = np.zeros(0, dtype=np.int64)  # hnsw tombstones, sorted

    def _new(self) -> Any:
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
        return int(self.index.ntotal) - len(self._deleted)

    def options(self) -> dict:
        if self.kind == "flat":
            return {}
        return {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "ef_construction": self.ef_construction}

    @classmethod
    def check_options(cls, options: Any, kind: str) -> dict:
        if not isinstance(options, dict):
            msg = f"index options must be a dict, got {type(options).__name__}."
            raise ConfigError(msg)
        if kind == "flat":
            return super().check_options(options, kind)
        unknown = sorted(set(options) - {"hnsw_m", "ef_search", "ef_construction"})
        if unknown:
            msg = f"unknown index option(s) {unknown}; known: hnsw_m, ef_search, ef_construction."
            raise ConfigError(msg)
        return {"hnsw_m": int_option(options, "hnsw_m", 32, 2, 256),
                "ef_search": int_option(options, "ef_search", 64, 1, 100_000),
                "ef_construction": int_option(options, "ef_construction", 80, 1, 100_000)}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "flat":
            self.index.remove_ids(ids)
            return
        self._deleted = np.union1d(self._deleted, ids)
        if len(self._deleted) >= COMPACT_RATIO * max(int(self.index.ntotal), 1):
            self.compact()

    def compact(self) -> None:
        """Rebuild an HNSW graph without its deleted nodes (a no-op for ``flat``)."""
        if not len(self._deleted):
            return
        keep = self.ids()
        vectors = self.reconstruct(keep) if len(keep) else np.zeros((0, self._dim), dtype=np.float32)
        self.index = self._new()
        self._deleted = np.zeros(0, dtype=np.int64)
        if len(keep):
            self.add(keep, vectors)

    def ids(self) -> np.ndarray:
        all_ids = self.faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return all_ids[~np.isin(all_ids, self._deleted)] if len(self._deleted) else all_ids

    def _params(self, k: int) -> Any:
        if not len(self._deleted):
            return None
        params = self.faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, 2 * k)
        batch = self.faiss.IDSelectorBatch(self._deleted)
        params.sel = self.faiss.IDSelectorNot(batch)
        params._keep = batch  # the selectors must outlive the search (swig does not own them)
        return params

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
        params = self._params(k)
        if params is None:
            scores, ids = self.index.search(queries, min(k, n))
        else:
            scores, ids = self.index.search(queries, min(k, n), params=params)
        return pad_results(scores, ids, k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        self.faiss.write_index(self.index, str(folder / INDEX_FILE))
        if len(self._deleted):
            np.save(folder / DELETED_FILE, self._deleted, allow_pickle=False)
            return [INDEX_FILE, DELETED_FILE]
        return [INDEX_FILE]

    @classmethod
    def file_names(cls, options: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        return [INDEX_FILE], [DELETED_FILE]

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], dim: int, options: Mapping[str, Any], kind: str = "flat") -> FaissIndex:
        index = cls(dim, kind=kind, **options)
        try:
            loaded = index.faiss.deserialize_index(np.frombuffer(files[INDEX_FILE], dtype=np.uint8))
        except RuntimeError as exc:
            msg = f"{INDEX_FILE} is not a readable faiss index ({str(exc).splitlines()[0][:120]})."
            raise IndexLoadError(msg) from exc
        expected = "IndexHNSW" if kind == "hnsw" else "IndexFlat"
        inner = index.faiss.downcast_index(loaded.index) if isinstance(loaded, index.faiss.IndexIDMap2) else None
        if inner is None or not type(inner).__name__.startswith(expected):
            msg = f"{INDEX_FILE} holds a {type(loaded).__name__} / {type(inner).__name__}, not the IndexIDMap2 over {expected} that a '{kind}' index writes."
            raise IndexLoadError(msg)
        if loaded.d != dim or inner.metric_type != index.faiss.METRIC_INNER_PRODUCT:
            msg = f"{INDEX_FILE} holds {loaded.d}-d vectors with metric {inner.metric_type}; the manifest says dim={dim}, inner product."
            raise IndexLoadError(msg)
        if loaded.id_map.size() != loaded.ntotal:
            msg = f"{INDEX_FILE}: id_map size ({loaded.id_map.size()}) does not match ntotal ({loaded.ntotal})."
            raise IndexLoadError(msg)
        if kind == "hnsw":
            inner.hnsw.efSearch = index.ef_search
        index.index = loaded
        if DELETED_FILE in files:
            index._deleted = _deleted_ids(files[DELETED_FILE], index)
        return index


def _deleted_ids(raw: bytes, index: FaissIndex) -> np.ndarray:
    try:
        deleted = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        msg = f"{DELETED_FILE} is not a plain numpy array file ({exc})."
        raise IndexLoadError(msg) from exc
    stored = index.faiss.vector_to_array(index.index.id_map)
    if deleted.ndim != 1 or deleted.dtype != np.int64 or not np.isin(deleted, stored).all():
        msg = f"{DELETED_FILE} must be a 1-d int64 array of ids stored in {INDEX_FILE}."
        raise IndexLoadError(msg)
    return np.unique(deleted)
