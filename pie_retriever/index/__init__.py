"""Vector indexes: ``VectorIndex`` ABC, faiss (``flat`` exact default, ``hnsw``) and numpy."""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from pie_retriever._util import check_choice
from pie_retriever.index.base import VectorIndex
from pie_retriever.index.numpy_index import NumpyIndex

INDEX_KINDS: dict[str, str] = {
    "flat": "faiss exact inner product (IndexFlatIP)",
    "hnsw": "faiss HNSW graph, approximate and faster on large pools; deletes are tombstones, compacted at 25%",
    "numpy": "exact inner product in numpy, no faiss involved",
    "milvus": "a Milvus collection (Milvus Lite file or server; index_options uri + collection; extra 'scale')",
}
# kind -> "module:Class"; a class may take ``kind=`` when it serves several kinds.
_CLASSES: dict[str, str] = {
    "flat": "pie_retriever.index.faiss_index:FaissIndex",
    "hnsw": "pie_retriever.index.faiss_index:FaissIndex",
    "numpy": "pie_retriever.index.numpy_index:NumpyIndex",
    "milvus": "pie_retriever.index.milvus_index:MilvusIndex",
}

__all__ = ["INDEX_KINDS", "NumpyIndex", "VectorIndex", "create_index", "index_class", "index_from_files", "load_index"]


def index_class(kind: str) -> type[VectorIndex]:
    """The class implementing index ``kind`` (a key of ``INDEX_KINDS``), imported on first use."""
    check_choice("index kind", kind, INDEX_KINDS)
    module, _, name = _CLASSES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def _kind_kwargs(cls: type, kind: str) -> dict[str, Any]:
    return {"kind": kind} if cls.__name__ == "FaissIndex" else {}


def create_index(dim: int, kind: str = "flat", **options: Any) -> VectorIndex:
    """Create an empty index of ``kind`` (a key of ``INDEX_KINDS``)."""
    cls = index_class(kind)
    options = cls.check_options(dict(options), kind) if options else {}
    return cls(dim, **_kind_kwargs(cls, kind), **options)


def index_from_files(kind: str, files: Mapping[str, bytes], dim: int, options: Mapping[str, Any]) -> VectorIndex:
    """Rebuild a saved index of ``kind`` from the (hash-checked) bytes of its files."""
    cls = index_class(kind)
    return cls.from_files(files, dim, options, **_kind_kwargs(cls, kind))


def load_index(folder: Any, kind: str, dim: int, options: Mapping[str, Any]) -> VectorIndex:
    """Read an index of ``kind`` saved into ``folder`` (no manifest or hash checks: see ``PIERetriever.load``)."""
    from pathlib import Path

    cls = index_class(kind)
    required, optional = cls.file_names(options)
    files = {name: (Path(folder) / name).read_bytes() for name in required}
    files.update({name: (Path(folder) / name).read_bytes() for name in optional if (Path(folder) / name).is_file()})
    return index_from_files(kind, files, dim, options)
