"""Exact inner-product index in numpy: no faiss involved (a reference and a choice for tiny pools)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pie_retriever.errors import IndexLoadError
from pie_retriever.index.base import VectorIndex, exact_topk, load_npy

VECTORS_FILE = "vectors.npy"
IDS_FILE = "ids.npy"


class NumpyIndex(VectorIndex):
    """Ids and vectors in two arrays, replaced together (never one without the other)."""

    kind = "numpy"

    def __init__(self, dim: int) -> None:
        self._dim = int(dim)
        self._data = (np.zeros(0, dtype=np.int64), np.zeros((0, self._dim), dtype=np.float32))

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self._data[0])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        old_ids, old_vectors = self._data
        self._data = (np.concatenate([old_ids, np.asarray(ids, dtype=np.int64)]),
                      np.concatenate([old_vectors, np.asarray(vectors, dtype=np.float32)]))

    def remove(self, ids: np.ndarray) -> None:
        old_ids, old_vectors = self._data
        keep = ~np.isin(old_ids, ids)
        self._data = (old_ids[keep], old_vectors[keep])

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids, vectors = self._data
        if allowed is None:
            return exact_topk(vectors, ids, queries, k)
        mask = np.isin(ids, allowed)
        return exact_topk(vectors[mask], ids[mask], queries, k)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        all_ids, vectors = self._data
        pos = {int(i): n for n, i in enumerate(all_ids)}
        return vectors[[pos[int(i)] for i in ids]]

    def ids(self) -> np.ndarray:
        return self._data[0].copy()

    def save(self, folder: Path) -> list[str]:
        ids, vectors = self._data
        np.save(folder / VECTORS_FILE, vectors, allow_pickle=False)
        np.save(folder / IDS_FILE, ids, allow_pickle=False)
        return [VECTORS_FILE, IDS_FILE]

    def to_files(self) -> dict[str, bytes]:

        out = {}
        for name, array in ((VECTORS_FILE, self._data[1]), (IDS_FILE, self._data[0])):
            buf = io.BytesIO()
            np.save(buf, array, allow_pickle=False)
            out[name] = buf.getvalue()
        return out

    @classmethod
    def file_names(cls, options: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        return [VECTORS_FILE, IDS_FILE], []

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], dim: int, options: Mapping[str, Any]) -> NumpyIndex:
        vectors = _array(files[VECTORS_FILE], VECTORS_FILE)
        ids = _array(files[IDS_FILE], IDS_FILE)
        if vectors.ndim != 2 or vectors.shape[1] != dim or vectors.dtype != np.float32:
            msg = f"{VECTORS_FILE} holds a {vectors.dtype} array of shape {vectors.shape}; expected float32 (n, {dim})."
            raise IndexLoadError(msg)
        if ids.ndim != 1 or ids.dtype != np.int64 or len(ids) != len(vectors):
            msg = f"{IDS_FILE} holds a {ids.dtype} array of shape {ids.shape}; expected int64 ({len(vectors)},) to match {VECTORS_FILE}."
            raise IndexLoadError(msg)
        index = cls(dim)
        index._data = (ids, vectors)
        return index


def _array(raw: bytes, name: str) -> np.ndarray:
    return load_npy(raw, name)
