"""Vector indexes: ``VectorIndex`` ABC, faiss (``flat`` exact default, ``hnsw``) and a numpy fallback."""

from __future__ import annotations

from pathlib import Path

from .._util import check_choice
from .base import VectorIndex
from .numpy_index import NumpyIndex

INDEX_KINDS: dict[str, str] = {
    "flat": "faiss exact inner product (IndexFlatIP)",
    "hnsw": "faiss HNSW graph, approximate and faster on large pools",
    "numpy": "exact inner product in numpy, no faiss needed",
}

__all__ = ["INDEX_KINDS", "NumpyIndex", "VectorIndex", "create_index", "load_index"]


def create_index(dim: int, kind: str = "flat", **options) -> VectorIndex:
    """Create an empty index of ``kind`` (a key of ``INDEX_KINDS``)."""
    check_choice("index kind", kind, INDEX_KINDS)
    if kind == "numpy":
        return NumpyIndex(dim)
    from .faiss_index import FaissIndex

    return FaissIndex(dim, kind=kind, **options)


def load_index(folder: Path, kind: str, dim: int, options: dict) -> VectorIndex:
    check_choice("index kind (in the manifest)", kind, INDEX_KINDS)
    if kind == "numpy":
        return NumpyIndex.load(folder, dim, options)
    from .faiss_index import FaissIndex

    return FaissIndex.load(folder, dim, options, kind=kind)
