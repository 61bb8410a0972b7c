"""pie_retriever: pick few-shot demonstrations by task match with prompt-based instruction embeddings.

Everything is exported lazily: ``import pie_retriever`` loads neither torch nor faiss.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "PIERetriever": "pie_retriever.retriever",
    "Demonstration": "pie_retriever.types",
    "Hit": "pie_retriever.types",
    "BM25Retriever": "pie_retriever.bm25",
    "Encoder": "pie_retriever.encoders.base",
    "TransformerEncoder": "pie_retriever.encoders.transformer",
    "HashingEncoder": "pie_retriever.encoders.hashing",
    "PROMPTS": "pie_retriever.prompts",
    "resolve_model": "pie_retriever.models",
    "MODEL_ALIASES": "pie_retriever.models",
    "DEFAULT_MODEL": "pie_retriever.models",
    "load_pool": "pie_retriever.pools",
    "load_bundled_pool": "pie_retriever.pools",
    "load_bundled_queries": "pie_retriever.pools",
    "PIEError": "pie_retriever.errors",
    "export_model": "pie_retriever.export",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .bm25 import BM25Retriever
    from .encoders.base import Encoder
    from .encoders.hashing import HashingEncoder
    from .encoders.transformer import TransformerEncoder
    from .errors import PIEError
    from .models import DEFAULT_MODEL, MODEL_ALIASES, resolve_model
    from .pools import load_bundled_pool, load_bundled_queries, load_pool
    from .prompts import PROMPTS
    from .retriever import PIERetriever
    from .types import Demonstration, Hit


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
