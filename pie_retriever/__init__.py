"""pie_retriever: pick few-shot demonstrations by task match with prompt-based instruction embeddings.

Everything is exported lazily: ``import pie_retriever`` loads neither torch nor faiss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pie_retriever._compat import install as _install_moved_paths

__version__ = "0.1.0"
_install_moved_paths()  # old module paths (pie_retriever.retriever, ...) keep importing, with a DeprecationWarning

_EXPORTS: dict[str, str] = {
    "PIERetriever": "pie_retriever.retrieval.retriever",
    "Demonstration": "pie_retriever.types",
    "Hit": "pie_retriever.types",
    "BM25Retriever": "pie_retriever.retrieval.bm25",
    "Encoder": "pie_retriever.encoders.base",
    "TransformerEncoder": "pie_retriever.encoders.transformer",
    "HashingEncoder": "pie_retriever.encoders.hashing",
    "PROMPTS": "pie_retriever.encoders.prompts",
    "resolve_model": "pie_retriever.encoders.models",
    "MODEL_ALIASES": "pie_retriever.encoders.models",
    "DEFAULT_MODEL": "pie_retriever.encoders.models",
    "load_pool": "pie_retriever.pool.pools",
    "load_bundled_pool": "pie_retriever.pool.pools",
    "load_bundled_queries": "pie_retriever.pool.pools",
    "PIEError": "pie_retriever.errors",
    "export_model": "pie_retriever.encoders.export",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from pie_retriever.encoders.base import Encoder
    from pie_retriever.encoders.hashing import HashingEncoder
    from pie_retriever.encoders.models import DEFAULT_MODEL, MODEL_ALIASES, resolve_model
    from pie_retriever.encoders.prompts import PROMPTS
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.errors import PIEError
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries, load_pool
    from pie_retriever.retrieval.bm25 import BM25Retriever
    from pie_retriever.retrieval.retriever import PIERetriever
    from pie_retriever.types import Demonstration, Hit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'pie_retriever' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
