"""BM25 baseline (bm25s) with the same ``retrieve`` shape as PIERetriever, for like-for-like comparisons.

Tokenizer: bm25s' regex word tokenizer, lowercased, English stopwords removed, no stemming.
Scoring: Lucene BM25 with k1=1.5, b=0.75 (bm25s defaults).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pie_retriever._util import DEFAULT_K, check_k, check_query
from pie_retriever.errors import DuplicateIdError, EmptyPoolError
from pie_retriever.types import Demonstration, Hit, check_embed_fields, fresh_id


def _with_ids(demonstrations: Iterable[Demonstration | Mapping[str, Any] | str]) -> list[Demonstration]:
    """Copies of the demonstrations, ids allocated as PIERetriever does; the caller's objects are untouched."""
    demos = [dataclasses.replace(Demonstration.from_any(d)) for d in demonstrations]
    taken: set[str] = set()
    for d in demos:
        if d.id is not None:
            if d.id in taken:
                msg = f"Duplicate demonstration id {d.id!r}; ids must be unique."
                raise DuplicateIdError(msg)
            taken.add(d.id)
    for i, d in enumerate(demos):
        if d.id is None:
            d.id = fresh_id(i, taken)
            taken.add(d.id)
    return demos


class BM25Retriever:
    """Lexical retrieval over the same pool. ``retrieve(query, k)`` / ``retrieve_batch(queries, k)`` → Hits."""

    def __init__(
        self,
        demonstrations: Iterable[Demonstration | Mapping[str, Any] | str],
        *,
        embed_fields: Sequence[str] = ("instruction",),
        k1: float = 1.5,
        b: float = 0.75,
        stopwords: str | None = "en",
    ) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.demonstrations = _with_ids(demonstrations)
        if not self.demonstrations:
            msg = "Cannot build BM25 over an empty pool; pass at least one demonstration."
            raise EmptyPoolError(msg)
        fields = check_embed_fields(embed_fields)
        self.embed_fields, self.k1, self.b, self.stopwords = fields, k1, b, stopwords
        self._bm25s = bm25s
        corpus = [d.text(fields) for d in self.demonstrations]
        tokens = bm25s.tokenize(corpus, stopwords=stopwords, show_progress=False)
        self.model = bm25s.BM25(k1=k1, b=b)
        self.model.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.demonstrations)

    def retrieve(self, query: str, k: int = DEFAULT_K) -> list[Hit]:
        return self.retrieve_batch([query], k)[0]

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of every demonstration for every query, ``(n_queries, n_demonstrations)`` float32."""
        queries = [check_query(q) for q in queries]
        out = np.zeros((len(queries), len(self.demonstrations)), dtype=np.float32)
        tokens = self._bm25s.tokenize(queries, stopwords=self.stopwords, show_progress=False, return_ids=False)
        for i, t in enumerate(tokens):
            if t:  # a query of stopwords only has no terms: every score stays 0
                out[i] = self.model.get_scores(t)
        return out

    def retrieve_batch(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[Hit]]:
        if isinstance(queries, str):
            msg = "retrieve_batch() takes a list of queries; use retrieve() for a single string."
            raise TypeError(msg)
        queries = [check_query(q) for q in queries]
        k = min(check_k(k), len(self.demonstrations))
        if not queries:
            return []
        tokens = self._bm25s.tokenize(queries, stopwords=self.stopwords, show_progress=False, return_ids=False)
        docs, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        out = []
        for row_docs, row_scores in zip(np.asarray(docs), np.asarray(scores)):
            out.append([Hit(self.demonstrations[int(i)], float(s), r) for r, (i, s) in enumerate(zip(row_docs, row_scores))])
        return out
