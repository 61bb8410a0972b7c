"""PIERetriever: a demonstration pool + an instruction encoder + a vector index."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ._util import check_k, check_query
from .errors import ConfigError, DuplicateIdError, EmptyPoolError, EncoderMismatchError, InvalidDemonstrationError
from .types import EMBED_FIELDS, Demonstration, Hit, check_embed_fields, fresh_id

logger = logging.getLogger(__name__)

FilterSpec = Mapping[str, Any] | Callable[[Demonstration], bool] | None


class _Union:
    """Membership in any of several containers (ids of the pool and of the batch being added)."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def __contains__(self, item: object) -> bool:
        return any(item in p for p in self.parts)


class PIERetriever:
    """Retrieve demonstrations whose *task* matches a query.

    Build one with :meth:`from_demonstrations`, or empty with an encoder and :meth:`add` later.

    Args:
        encoder: any :class:`~pie_retriever.encoders.Encoder`; default: ``TransformerEncoder(DEFAULT_MODEL)``.
        index: ``"flat"`` (exact, default), ``"hnsw"``, ``"numpy"``, or a ``VectorIndex`` instance.
        embed_fields: which demonstration fields are embedded (joined by newlines); default the instruction.
        dedupe: skip demonstrations whose embedded text is identical to one already in the pool.
    """

    def __init__(
        self,
        encoder: Any = None,
        *,
        index: Any = "flat",
        embed_fields: Sequence[str] = ("instruction",),
        dedupe: bool = False,
        index_options: Mapping[str, Any] | None = None,
    ) -> None:
        from .index import VectorIndex, create_index

        if encoder is None:
            from .encoders.transformer import TransformerEncoder
            from .models import DEFAULT_MODEL

            encoder = TransformerEncoder(DEFAULT_MODEL)
        elif isinstance(encoder, (str, os.PathLike)):
            from .encoders.transformer import TransformerEncoder

            encoder = TransformerEncoder(os.fspath(encoder))
        self.encoder = encoder
        self.embed_fields = check_embed_fields(embed_fields)
        self.dedupe = bool(dedupe)
        self.index = index if isinstance(index, VectorIndex) else create_index(encoder.dim, index, **dict(index_options or {}))
        if self.index.dim != encoder.dim:
            msg = f"Index dim {self.index.dim} does not match encoder dim {encoder.dim}."
            raise EncoderMismatchError(msg)
        self._demos: dict[int, Demonstration] = {}
        self._label_of: dict[str, int] = {}
        self._texts: dict[str, int] = {}
        self._next_label = 0
        self._warned_short = False

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_demonstrations(
        cls,
        demonstrations: Iterable[Demonstration | Mapping[str, Any] | str],
        encoder: Any = None,
        *,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> PIERetriever:
        """Index a pool. ``demonstrations``: Demonstration objects, dicts or strings. An empty pool is an error."""
        demos = list(demonstrations)
        if not demos:
            msg = "Cannot build a retriever from an empty pool; pass at least one demonstration."
            raise EmptyPoolError(msg)
        retriever = cls(encoder, **kwargs)
        retriever.add(demos, show_progress=show_progress)
        return retriever

    # -- pool management -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._demos)

    def __iter__(self) -> Iterator[Demonstration]:
        return iter(self._demos.values())

    def __contains__(self, demo_id: object) -> bool:
        return demo_id in self._label_of

    @property
    def demonstrations(self) -> list[Demonstration]:
        return list(self._demos.values())

    def get(self, demo_id: str) -> Demonstration:
        if demo_id not in self._label_of:
            msg = f"No demonstration with id {demo_id!r}."
            raise KeyError(msg)
        return self._demos[self._label_of[demo_id]]

    def add(self, demonstrations: Iterable[Demonstration | Mapping[str, Any] | str], *, show_progress: bool | None = None) -> list[str]:
        """Embed and index demonstrations; return their ids (generated when missing).

        A duplicate id (within the batch or with the pool) raises ``DuplicateIdError`` and adds nothing.
        With ``dedupe=True`` a demonstration whose embedded text is already indexed is skipped; its id is
        still returned, pointing at the existing demonstration.
        """
        if isinstance(demonstrations, (str, Mapping, Demonstration)):
            demonstrations = [demonstrations]
        demos = []
        for i, d in enumerate(demonstrations):
            try:
                demos.append(Demonstration.from_any(d))
            except InvalidDemonstrationError as exc:
                msg = f"Demonstration #{i}: {exc}"
                raise type(exc)(msg) from exc
        seen: set[str] = set()
        for d in demos:
            if d.id is None:
                continue
            if d.id in self._label_of or d.id in seen:
                msg = f"Duplicate demonstration id {d.id!r}; ids must be unique. Nothing was added."
                raise DuplicateIdError(msg)
            seen.add(d.id)
        ids: list[str] = []
        new: list[Demonstration] = []
        texts: list[str] = []
        batch_texts: dict[str, str] = {}
        for d in demos:
            text = d.text(self.embed_fields)
            if not text.strip():
                msg = f"Demonstration {d.id or d.instruction!r:.40} has no text in the embedded fields {self.embed_fields}."
                raise InvalidDemonstrationError(msg)
            if self.dedupe and (text in self._texts or text in batch_texts):
                existing = batch_texts.get(text) or self._demos[self._texts[text]].id
                ids.append(existing)
                continue
            if d.id is None:
                d = Demonstration(d.instruction, d.input, d.output, self._fresh_id(seen), d.metadata)
                seen.add(d.id)
            batch_texts[text] = d.id
            new.append(d)
            texts.append(text)
            ids.append(d.id)
        if not new:
            return ids
        vectors = self.encoder.encode_documents(texts, show_progress=show_progress)
        labels = np.arange(self._next_label, self._next_label + len(new), dtype=np.int64)
        self.index.add(labels, vectors)
        for label, d, text in zip(labels.tolist(), new, texts):
            self._demos[label] = d
            self._label_of[d.id] = label
            self._texts.setdefault(text, label)
        self._next_label += len(new)
        return ids

    def _fresh_id(self, taken: set[str]) -> str:
        return fresh_id(self._next_label + len(taken), _Union(self._label_of, taken))

    def delete(self, ids: str | Iterable[str]) -> int:
        """Remove demonstrations by id; return how many were removed. Unknown ids raise KeyError."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        missing = [i for i in ids if i not in self._label_of]
        if missing:
            msg = f"Unknown demonstration id(s) {missing[:5]}; nothing was deleted."
            raise KeyError(msg)
        labels = np.array([self._label_of[i] for i in ids], dtype=np.int64)
        self.index.remove(labels)
        for demo_id, label in zip(ids, labels.tolist()):
            demo = self._demos.pop(label)
            del self._label_of[demo_id]
            text = demo.text(self.embed_fields)
            if self._texts.get(text) == label:
                del self._texts[text]
        return len(ids)

    # -- retrieval -----------------------------------------------------------------------------------
    def _allowed(self, filter: FilterSpec) -> np.ndarray | None:
        if filter is None:
            return None
        if callable(filter):
            keep = [label for label, d in self._demos.items() if filter(d)]
            return np.array(keep, dtype=np.int64)
        if not isinstance(filter, Mapping) or not filter:
            msg = "filter must be a non-empty dict {metadata_key: value or [values]} or a callable(Demonstration) -> bool."
            raise TypeError(msg)
        known: set[str] = set()
        for d in self._demos.values():
            known.update(d.metadata)
        unknown = sorted(set(filter) - known)
        if unknown:
            msg = f"Unknown metadata filter key(s) {unknown}; keys present in the pool: {sorted(known) or 'none'}."
            raise KeyError(msg)
        wanted = {k: (set(v) if isinstance(v, (list, tuple, set, frozenset)) else {v}) for k, v in filter.items()}

        def ok(d: Demonstration) -> bool:
            for key, values in wanted.items():
                value = d.metadata.get(key)
                try:
                    if value not in values:
                        return False
                except TypeError:  # unhashable metadata value
                    if all(value != v for v in values):
                        return False
            return True

        return np.array([label for label, d in self._demos.items() if ok(d)], dtype=np.int64)

    def retrieve(
        self,
        query: str,
        k: int = 4,
        *,
        filter: FilterSpec = None,
        min_score: float | None = None,
        mmr: bool = False,
        mmr_lambda: float = 0.5,
        fetch_k: int | None = None,
    ) -> list[Hit]:
        """The ``k`` demonstrations whose task best matches ``query``, best first.

        Args:
            filter: ``{metadata_key: value or [values]}`` (every key must match) or a predicate. Still returns
                ``k`` hits whenever ``k`` demonstrations pass the filter.
            min_score: drop hits whose cosine score is below this.
            mmr: re-rank with maximal marginal relevance for diversity among the ``fetch_k`` best
                (default ``max(4k, 20)``); ``mmr_lambda`` 1.0 = pure relevance, 0.0 = pure diversity.
        """
        return self.retrieve_batch([query], k, filter=filter, min_score=min_score, mmr=mmr, mmr_lambda=mmr_lambda, fetch_k=fetch_k)[0]

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int = 4,
        *,
        filter: FilterSpec = None,
        min_score: float | None = None,
        mmr: bool = False,
        mmr_lambda: float = 0.5,
        fetch_k: int | None = None,
        show_progress: bool | None = None,
    ) -> list[list[Hit]]:
        """Like :meth:`retrieve` for many queries, with one encoder call and one index search."""
        if isinstance(queries, str):
            msg = "retrieve_batch() takes a list of queries; use retrieve() for a single string."
            raise TypeError(msg)
        queries = [check_query(q) for q in queries]
        k = check_k(k)
        if not 0.0 <= mmr_lambda <= 1.0:
            msg = f"mmr_lambda must be in [0, 1], got {mmr_lambda!r}."
            raise ConfigError(msg)
        if not queries:
            return []
        if not self._demos:
            msg = "The retriever is empty; add demonstrations before retrieving."
            raise EmptyPoolError(msg)
        allowed = self._allowed(filter)
        available = len(self._demos) if allowed is None else len(allowed)
        if k > available and not self._warned_short:
            where = "the pool" if allowed is None else "the demonstrations that pass the filter"
            warnings.warn(f"k={k} is larger than {where} ({available}); returning all {available}.", stacklevel=3)
            self._warned_short = True
        if available == 0:
            return [[] for _ in queries]
        qv = self.encoder.encode_queries(queries, show_progress=show_progress)
        search_k = min(k, available)
        if mmr:
            search_k = min(available, max(fetch_k or 0, 4 * k, 20))
        scores, labels = self.index.search(qv, search_k, allowed=allowed)
        results: list[list[Hit]] = []
        for qi in range(len(queries)):
            row_labels, row_scores = labels[qi], scores[qi]
            valid = row_labels >= 0
            row_labels, row_scores = row_labels[valid], row_scores[valid]
            if mmr and len(row_labels) > 1:
                order = self._mmr(qv[qi], row_labels, row_scores, min(k, len(row_labels)), mmr_lambda)
                row_labels, row_scores = row_labels[order], row_scores[order]
            hits = []
            for label, score in zip(row_labels[:k].tolist(), row_scores[:k].tolist()):
                if min_score is not None and score < min_score:
                    continue
                hits.append(Hit(self._demos[label], float(score), len(hits)))
            results.append(hits)
        return results

    def _mmr(self, query: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int, lam: float) -> list[int]:
        vectors = self.index.reconstruct(labels)
        sim = vectors @ vectors.T
        chosen: list[int] = [0]
        rest = list(range(1, len(labels)))
        while len(chosen) < k and rest:
            redundancy = sim[np.ix_(rest, chosen)].max(axis=1)
            value = lam * scores[rest] - (1.0 - lam) * redundancy
            pick = rest[int(np.argmax(value))]
            chosen.append(pick)
            rest.remove(pick)
        return chosen

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Save to a folder: ``manifest.json``, the index files and ``demonstrations.jsonl``. No pickle.

        Everything is written into a temporary sibling folder first and then renamed into place, so a
        crash mid-save leaves the previous save loadable. See :mod:`pie_retriever.persistence`.
        """
        from .persistence import save_retriever

        return save_retriever(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: Any = None) -> PIERetriever:
        """Load a saved folder. Rebuilds the encoder from the manifest unless one is given; either way the
        encoder's fingerprint must match the one the index was built with."""
        from .persistence import load_retriever

        return load_retriever(cls, path, encoder)

    def _state(self) -> tuple[dict[int, Demonstration], int]:
        """The pool as ``({label: demonstration}, next_label)``: what persistence writes next to the index."""
        return dict(self._demos), self._next_label

    def _restore(self, demos: Mapping[int, Demonstration], next_label: int) -> None:
        """Fill an empty retriever (whose index already holds the vectors) with its saved pool."""
        for label, demo in demos.items():
            self._demos[label] = demo
            self._label_of[demo.id] = label
            self._texts.setdefault(demo.text(self.embed_fields), label)
        self._next_label = int(next_label)

    def __repr__(self) -> str:
        cfg = self.encoder.config()
        return f"PIERetriever(n={len(self)}, encoder={cfg.get('type')}:{cfg.get('model', '')}, index={self.index.kind})"

    def as_langchain_retriever(self, **kwargs: Any) -> Any:
        """A LangChain ``BaseRetriever`` over this pool (needs the ``langchain`` extra).

        The integration is looked up by name at call time: the core never imports integrations.
        """
        import importlib

        module = importlib.import_module("pie_retriever.integrations.langchain")
        return module.PIELangChainRetriever(retriever=self, **kwargs)
