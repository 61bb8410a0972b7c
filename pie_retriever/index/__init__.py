"""Vector indexes: ``VectorIndex`` ABC, faiss (``flat`` exact default, ``hnsw``) and a numpy fallback."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import PIEError
from .base import VectorIndex
from .numpy_index import NumpyIndex

INDEX_KINDS: dict[str, str] = {
    "flat": "faiss exact inner product (IndexFlatIP); numpy when faiss is missing",
    "hnsw": "faiss HNSW graph, approximate and faster on large pools",
    "numpy": "exact inner product in numpy, no faiss needed",
}

__all__ = ["INDEX_KINDS", "NumpyIndex", "VectorIndex", "create_index", "load_index"]


def _has_faiss() -> bool:
    return importlib.util.find_spec("faiss") is not None


def create_index(dim: int, kind: str = "flat", **options) -> VectorIndex:
    """Create an empty index of ``kind`` (a key of ``INDEX_KINDS``)."""
    if kind not in INDEX_KINDS:
        msg = f"Unknown index kind {kind!r}; choose one of: {', '.join(INDEX_KINDS)}."
        raise PIEError(msg)
    if kind == "numpy" or (kind == "flat" and not _has_faiss()):
        return NumpyIndex(dim)
    from .faiss_index import FaissIndex

    return FaissIndex(dim, kind=kind, **options)


def load_index(folder: Path, kind: str, dim: int, options: dict) -> VectorIndex:
    if kind == "numpy":
        return NumpyIndex.load(folder, dim, options)
    if kind not in INDEX_KINDS:
        msg = f"Unknown index kind {kind!r} in manifest; known: {', '.join(INDEX_KINDS)}."
        raise PIEError(msg)
    from .faiss_index import FaissIndex

    return FaissIndex.load(folder, dim, options, kind=kind)
