"""Rankers with one shared method, used by ``pie-retriever eval`` and the benchmark; they wrap the shipped retrievers.

``rank(pool_texts, query_texts, k, *, loo=False) -> np.ndarray[int] (n_queries, k)`` returns indices into
``pool_texts``, best first. With ``loo=True`` the queries are the pool itself (``query_texts`` must be
``None`` or the same list) and each query's own index is never returned (leave-one-out).

* :class:`EmbeddingRanker` — any core :class:`~pie_retriever.encoders.Encoder`; cosine (inner product
  of L2-normalised vectors); the pool is encoded once per call.
* :class:`BM25Ranker` — :class:`pie_retriever.retrieval.bm25.BM25Retriever` (bm25s, Lucene BM25 k1=1.5, b=0.75,
  English stopwords); every document is scored with its :meth:`~pie_retriever.retrieval.bm25.BM25Retriever.scores`.
* :class:`TfidfRanker` — scikit-learn ``TfidfVectorizer`` (defaults) fitted on the pool, cosine.

Every ranker ends in :func:`top_k` (ties broken by the lower pool index, so results are deterministic;
``index.base.exact_topk`` is the retrievers' faster search and does not pin ties or exclude self-matches).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pie_retriever._util import check_k
from pie_retriever.errors import ConfigError

__all__ = ["BM25Ranker", "EmbeddingRanker", "Ranker", "TfidfRanker", "rank_by_vectors", "top_k"]

_CHUNK = 1024


def _check_inputs(pool_texts: Sequence[str], query_texts: Sequence[str] | None, k: Any, loo: bool) -> tuple[list[str], list[str], int]:
    if isinstance(pool_texts, str) or (query_texts is not None and isinstance(query_texts, str)):
        msg = "pool_texts and query_texts must be lists of strings, not a single string."
        raise TypeError(msg)
    pool = list(pool_texts)
    if not pool:
        msg = "pool_texts is empty; a ranker needs at least one pool text."
        raise ConfigError(msg)
    if loo:
        if query_texts is not None and list(query_texts) != pool:
            msg = "With loo=True the queries are the pool itself; pass query_texts=None (or the same list)."
            raise ConfigError(msg)
        queries = pool
    else:
        if query_texts is None:
            msg = "query_texts is None; pass the queries, or loo=True to rank the pool against itself."
            raise ConfigError(msg)
        queries = list(query_texts)
    k = check_k(k)
    limit = len(pool) - 1 if loo else len(pool)
    if k > limit:
        msg = f"k={k} exceeds the number of candidates per query ({limit}{' with leave-one-out' if loo else ''})."
        raise ConfigError(msg)
    return pool, queries, k


def top_k(scores: np.ndarray, k: int, *, exclude_self_offset: int | None = None) -> np.ndarray:
    """Indices of the ``k`` largest scores per row (ties: lower index first).

    ``exclude_self_offset``: when given, row ``i`` never returns column ``exclude_self_offset + i``.
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    if exclude_self_offset is not None:
        rows = np.arange(s.shape[0])
        s[rows, rows + exclude_self_offset] = -np.inf
    n = s.shape[1]
    if k < n:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        # argpartition may cut a tie group arbitrarily: include every column tied with the k-th score
        kth = np.take_along_axis(s, part, axis=1).min(axis=1, keepdims=True)
        out = np.empty((s.shape[0], k), dtype=np.int64)
        for i in range(s.shape[0]):
            cand = np.flatnonzero(s[i] >= kth[i])
            order = np.lexsort((cand, -s[i, cand]))
            out[i] = cand[order[:k]]
        return out
    return np.lexsort((np.broadcast_to(np.arange(n), s.shape), -s), axis=1)[:, :k].astype(np.int64)


def _rank_blocks(score_block: Any, n_queries: int, k: int, loo: bool) -> np.ndarray:
    """:func:`top_k` over ``score_block(start, stop)`` (dense or sparse query × pool scores) in chunks of queries."""
    out = []
    for start in range(0, n_queries, _CHUNK):
        block = score_block(start, min(start + _CHUNK, n_queries))
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        out.append(top_k(block, k, exclude_self_offset=start if loo else None))
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def rank_by_vectors(pool_vecs: Any, query_vecs: Any, k: int, *, loo: bool = False) -> np.ndarray:
    """Top-``k`` pool rows per query row by inner product (dense or scipy-sparse); ``loo``: queries are the pool."""
    return _rank_blocks(lambda a, b: query_vecs[a:b] @ pool_vecs.T, query_vecs.shape[0], k, loo)


class Ranker:
    """Base class: subclasses implement :meth:`_vectors` (pool and query vectors) or override :meth:`rank`."""

    name = "ranker"

    def rank(self, pool_texts: Sequence[str], query_texts: Sequence[str] | None, k: int, *, loo: bool = False) -> np.ndarray:
        pool, queries, k = _check_inputs(pool_texts, query_texts, k, loo)
        pool_vecs, query_vecs = self._vectors(pool, None if loo else queries)
        return rank_by_vectors(pool_vecs, query_vecs, k, loo=loo)

    def _vectors(self, pool: list[str], queries: list[str] | None) -> tuple[Any, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class EmbeddingRanker(Ranker):
    """Cosine ranking with a core encoder (documents with its ``prompt``, queries with its ``query_prompt``)."""

    def __init__(self, encoder: Any, *, show_progress: bool | None = None) -> None:
        self.encoder = encoder
        self.show_progress = show_progress
        self.name = getattr(encoder, "model_spec", type(encoder).__name__)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Document vectors (float32, L2-normalised) — what clustering and similarity protocols use."""
        return self.encoder.encode_documents(list(texts), show_progress=self.show_progress)

    @property
    def symmetric(self) -> bool:
        """True when queries and documents are encoded with the same prompt (one encoding serves both)."""
        return getattr(self.encoder, "query_prompt", None) == getattr(self.encoder, "prompt", None)

    def _vectors(self, pool: list[str], queries: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
        pool_vecs = self.embed(pool)
        if queries is None:
            query_vecs = pool_vecs if self.symmetric else self.encoder.encode_queries(pool, show_progress=self.show_progress)
        else:
            query_vecs = self.encoder.encode_queries(queries, show_progress=self.show_progress)
        return pool_vecs, query_vecs


class TfidfRanker(Ranker):
    """TF-IDF (scikit-learn defaults: lowercase, word unigrams, smooth idf, L2 rows) fitted on the pool."""

    name = "tfidf"

    def __init__(self, **vectorizer_options: Any) -> None:
        self.vectorizer_options = vectorizer_options

    def _vectorizer(self) -> Any:
        from pie_retriever.errors import require

        text = require("sklearn.feature_extraction.text", "train", "TfidfRanker")
        return text.TfidfVectorizer(**self.vectorizer_options)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Dense TF-IDF vectors fitted on ``texts`` themselves (for clustering / similarity protocols)."""
        x = self._vectorizer().fit_transform(list(texts))
        return np.asarray(x.toarray(), dtype=np.float32)

    def _vectors(self, pool: list[str], queries: list[str] | None) -> tuple[Any, Any]:
        vec = self._vectorizer()
        pool_vecs = vec.fit_transform(pool)
        return pool_vecs, pool_vecs if queries is None else vec.transform(queries)


class BM25Ranker(Ranker):
    """BM25 through :class:`pie_retriever.retrieval.bm25.BM25Retriever`: every document scored, so ties and leave-one-out are exact."""

    name = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en") -> None:
        self.k1, self.b, self.stopwords = k1, b, stopwords

    def rank(self, pool_texts: Sequence[str], query_texts: Sequence[str] | None, k: int, *, loo: bool = False) -> np.ndarray:
        from pie_retriever.retrieval.bm25 import BM25Retriever

        pool, queries, k = _check_inputs(pool_texts, query_texts, k, loo)
        retriever = BM25Retriever(pool, k1=self.k1, b=self.b, stopwords=self.stopwords)
        return _rank_blocks(lambda a, b: retriever.scores(queries[a:b]), len(queries), k, loo)
