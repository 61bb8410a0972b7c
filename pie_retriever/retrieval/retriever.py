"""PIERetriever: a demonstration pool + an instruction encoder + a vector index.

Thread safety: any number of threads may call ``retrieve``/``retrieve_batch``/``get``/``save`` at once;
``add`` and ``delete`` are exclusive (a readers-writer lock with writer preference). Encoding, the slow
part, runs outside the lock, so readers keep answering while a writer embeds its batch.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from pie_retriever._rwlock import RWLock
from pie_retriever._util import DEFAULT_K, check_k, check_query
from pie_retriever.errors import (
    ConfigError,
    DuplicateIdError,
    EmptyPoolError,
    EncoderMismatchError,
    InvalidDemonstrationError,
    UnknownIdError,
)
from pie_retriever.retrieval.content import (
    CONTENT_FIELDS,
    DEFAULT_CONTENT_SCORER,
    DEFAULT_CONTENT_WEIGHT,
    check_content_weight,
    make_content_scorer,
)
from pie_retriever.retrieval.filters import FilterSpec, MetadataColumns, MetadataFilter, compile_filter
from pie_retriever.retrieval.mmr import DEFAULT_MMR_LAMBDA
from pie_retriever.types import EMBED_FIELDS, Demonstration, Hit, check_embed_fields, check_storable, fresh_id

__all__ = ["DEFAULT_CONTENT_SCORER", "DEFAULT_CONTENT_WEIGHT", "EMBED_FIELDS", "FilterSpec", "PIERetriever"]

logger = logging.getLogger(__name__)


class _Union:
    """Membership in any of several containers (ids of the pool and of the batch being added)."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def __contains__(self, item: object) -> bool:
        return any(item in p for p in self.parts)


def _check_options(k: Any, min_score: Any, mmr_lambda: Any, fetch_k: Any) -> int:
    k = check_k(k)
    if isinstance(mmr_lambda, bool) or not isinstance(mmr_lambda, (int, float)) or not 0.0 <= mmr_lambda <= 1.0:
        msg = f"mmr_lambda must be a number in [0, 1], got {mmr_lambda!r}."
        raise ConfigError(msg)
    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or math.isnan(min_score)):
        msg = f"min_score must be a number (a cosine, usually in [-1, 1]) or None, got {min_score!r}."
        raise ConfigError(msg)
    if fetch_k is not None:
        check_k(fetch_k, "fetch_k")
    return k


class PIERetriever:
    """Retrieve demonstrations whose *task* matches a query.

    Build one with :meth:`from_demonstrations`, or empty with an encoder and :meth:`add` later.

    Args:
        encoder: any :class:`~pie_retriever.encoders.Encoder`; default: ``TransformerEncoder(DEFAULT_MODEL)``.
        index: ``"flat"`` (exact, default), ``"hnsw"``, ``"numpy"``, or a ``VectorIndex`` instance.
        embed_fields: which demonstration fields are embedded (joined by newlines); default the instruction.
        dedupe: skip demonstrations whose embedded text is identical to one already in the pool.
        index_options: options of the index kind (e.g. ``{"hnsw_m": 32, "ef_search": 64}``).
        content_weight: default weight of content relevance in retrieval, in [0, 1] (0 = task match only;
            see :meth:`retrieve`). Default :data:`DEFAULT_CONTENT_WEIGHT`.
        content_scorer: ``"bm25"``, ``"minilm"``, a :class:`~pie_retriever.retrieval.content.ContentScorer`, or None (no
            content scoring: ``content_weight`` must then be 0). ``"auto"``: :data:`DEFAULT_CONTENT_SCORER`.
    """

    def __init__(
        self,
        encoder: Any = None,
        *,
        index: Any = "flat",
        embed_fields: Sequence[str] = ("instruction",),
        dedupe: bool = False,
        index_options: Mapping[str, Any] | None = None,
        content_weight: float | None = None,
        content_scorer: Any = "auto",
    ) -> None:
        from pie_retriever.index import VectorIndex, create_index

        if encoder is None:
            from pie_retriever.encoders.models import DEFAULT_MODEL
            from pie_retriever.encoders.transformer import TransformerEncoder

            encoder = TransformerEncoder(DEFAULT_MODEL)
        elif isinstance(encoder, (str, os.PathLike)):
            from pie_retriever.encoders import make_encoder

            encoder = make_encoder(os.fspath(encoder))  # OnnxEncoder for an ONNX export folder, else TransformerEncoder
        self.encoder = encoder
        self.embed_fields = check_embed_fields(embed_fields)
        self.dedupe = bool(dedupe)
        self.index = index if isinstance(index, VectorIndex) else create_index(encoder.dim, index, **dict(index_options or {}))
        if self.index.dim != encoder.dim:
            msg = f"Index dim {self.index.dim} does not match encoder dim {encoder.dim}."
            raise EncoderMismatchError(msg)
        self.index.bind_encoder(encoder.fingerprint)  # scale hook: an external index (milvus) records/checks it
        self._lock = RWLock()
        self._demos: dict[int, Demonstration] = {}
        self._label_of: dict[str, int] = {}
        self._texts: dict[str, int] = {}
        self._next_label = 0
        self._warned_short = False
        self.content_weight = check_content_weight(DEFAULT_CONTENT_WEIGHT if content_weight is None else content_weight)
        self.content = make_content_scorer(DEFAULT_CONTENT_SCORER if content_scorer == "auto" else content_scorer)
        if self.content is None and self.content_weight > 0:
            msg = f"content_weight={self.content_weight} needs a content scorer; pass content_scorer='bm25' or 'minilm', or content_weight=0."
            raise ConfigError(msg)

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
        return iter(self.demonstrations)

    def __contains__(self, demo_id: object) -> bool:
        return demo_id in self._label_of

    @property
    def demonstrations(self) -> list[Demonstration]:
        with self._lock.read():
            return list(self._demos.values())

    def get(self, demo_id: str) -> Demonstration:
        with self._lock.read():
            if demo_id not in self._label_of:
                msg = f"No demonstration with id {demo_id!r}."
                raise UnknownIdError(msg)
            return self._demos[self._label_of[demo_id]]

    def _prepare(self, demonstrations: Any) -> list[Demonstration]:
        """Private, validated copies of the demonstrations to add (the caller's objects are never kept)."""
        if isinstance(demonstrations, (str, Mapping, Demonstration)):
            demonstrations = [demonstrations]
        if not isinstance(demonstrations, Iterable):
            msg = f"add() takes demonstrations (a list of Demonstration, dict or str), got {type(demonstrations).__name__}."
            raise TypeError(msg)
        demos: list[Demonstration] = []
        seen: set[str] = set()
        for i, d in enumerate(demonstrations):
            where = f"Demonstration #{i}"
            try:
                demo = copy.deepcopy(Demonstration.from_any(d))
            except InvalidDemonstrationError as exc:
                msg = f"{where}: {exc}"
                raise InvalidDemonstrationError(msg) from exc
            where = f"Demonstration #{i} ({demo.id or demo.instruction[:40]!r})"
            check_storable(demo, where)
            if not demo.text(self.embed_fields).strip():
                msg = f"{where} has no text in the embedded fields {self.embed_fields}."
                raise InvalidDemonstrationError(msg)
            if demo.id is not None:
                if demo.id in seen:
                    msg = f"Duplicate demonstration id {demo.id!r} within the batch; ids must be unique. Nothing was added."
                    raise DuplicateIdError(msg)
                seen.add(demo.id)
            demos.append(demo)
        return demos

    def _check_ids_free(self, demos: list[Demonstration]) -> None:
        taken = [d.id for d in demos if d.id is not None and d.id in self._label_of]
        if taken:
            msg = f"Duplicate demonstration id {taken[0]!r}; ids must be unique. Nothing was added."
            raise DuplicateIdError(msg)

    def _encode(self, demos: list[Demonstration], texts: list[str], show_progress: bool | None) -> np.ndarray:
        """Encode and check the encoder's output (shape, finite values) before anything is indexed."""
        vectors = np.asarray(self.encoder.encode_documents(texts, show_progress=show_progress))
        if vectors.shape != (len(texts), self.encoder.dim):
            msg = (f"The encoder returned an array of shape {vectors.shape} for {len(texts)} texts; expected "
                   f"({len(texts)}, {self.encoder.dim}). Nothing was added.")
            raise EncoderMismatchError(msg)
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            i = int(np.argmin(finite))
            msg = (f"The encoder returned NaN or infinite values for demonstration {demos[i].id or demos[i].instruction[:40]!r}; "
                   "nothing was added. Check the encoder (a custom one must return finite float vectors).")
            raise EncoderMismatchError(msg)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def add(self, demonstrations: Iterable[Demonstration | Mapping[str, Any] | str], *, show_progress: bool | None = None) -> list[str]:
        """Embed and index demonstrations; return their ids (generated when missing).

        Everything is validated before anything changes: a bad demonstration, a duplicate id (within the
        batch or with the pool) or a bad encoder output raises and adds nothing. With ``dedupe=True`` a
        demonstration whose embedded text is already indexed is skipped; its id is still returned,
        pointing at the existing demonstration.
        """
        demos = self._prepare(demonstrations)
        # No lock here: the checks below only save work (encoding a batch that would be refused or deduplicated);
        # the write lock, taken once, checks again. dict.copy() and `in` are single steps under the GIL.
        self._check_ids_free(demos)
        known = self._texts.copy() if self.dedupe else {}
        todo, seen_text = [], set()
        for d in demos:
            text = d.text(self.embed_fields)
            if not (self.dedupe and (text in known or text in seen_text)):
                todo.append(d)
                seen_text.add(text)
        vectors = self._encode(todo, [d.text(self.embed_fields) for d in todo], show_progress) if todo else None
        features = self._content_features(todo) if todo else None
        with self._lock.write():
            self._check_ids_free(demos)
            return self._insert(demos, todo, vectors, features)

    def _content_features(self, demos: list[Demonstration]) -> Any:
        """Content-scorer features of demonstrations (outside the lock); None without a scorer."""
        return None if self.content is None else list(self.content.features([d.text(CONTENT_FIELDS) for d in demos]))

    def _insert(self, demos: list[Demonstration], encoded: list[Demonstration], vectors: np.ndarray | None,
                features: list[Any] | None = None) -> list[str]:
        """Give ids and labels, index the vectors (and content features), record the demonstrations. Runs under the write lock."""
        row_of = {id(d): i for i, d in enumerate(encoded)}
        batch_ids = {d.id for d in demos if d.id is not None}
        ids: list[str] = []
        rows: list[int] = []
        new: list[Demonstration] = []
        batch_texts: dict[str, str] = {}
        for d in demos:
            text = d.text(self.embed_fields)
            if self.dedupe and (text in self._texts or text in batch_texts):
                ids.append(batch_texts.get(text) or self._demos[self._texts[text]].id)
                continue
            if id(d) not in row_of:  # its text was in the pool when encoding started and has been deleted since
                vectors = np.vstack([vectors, self._encode([d], [text], False)]) if vectors is not None else self._encode([d], [text], False)
                row_of[id(d)] = len(vectors) - 1
                if self.content is not None:
                    features = [*(features or []), *self._content_features([d])]
            if d.id is None:
                d.id = fresh_id(self._next_label + len(new), _Union(self._label_of, batch_ids))
                batch_ids.add(d.id)
            batch_texts[text] = d.id
            new.append(d)
            rows.append(row_of[id(d)])
            ids.append(d.id)
        if new:
            labels = np.arange(self._next_label, self._next_label + len(new), dtype=np.int64)
            if self.index.supports_metadata:  # scale hook: a database index stores metadata to filter on
                self.index.add(labels, vectors[rows], metadata=[d.metadata for d in new])
            else:
                self.index.add(labels, vectors[rows])
            if self.content is not None:
                self.content.add(labels.tolist(), [features[r] for r in rows])
            for label, d in zip(labels.tolist(), new):
                self._demos[label] = d
                self._label_of[d.id] = label
                self._texts.setdefault(d.text(self.embed_fields), label)
            self._next_label += len(new)
        return ids

    def delete(self, ids: str | Iterable[str]) -> int:
        """Remove demonstrations by id; return how many were removed. Unknown ids raise KeyError and delete nothing.

        An id given twice is removed once.
        """
        if not isinstance(ids, (str, Iterable)):
            msg = f"delete() takes an id or a list of ids, got {type(ids).__name__}. Nothing was deleted."
            raise TypeError(msg)
        ids = [ids] if isinstance(ids, str) else list(ids)
        bad = [i for i in ids if not isinstance(i, str)]
        if bad:
            msg = f"delete() takes demonstration ids (strings), got {bad[0]!r} ({type(bad[0]).__name__}). Nothing was deleted."
            raise TypeError(msg)
        ids = list(dict.fromkeys(ids))
        with self._lock.write():
            missing = [i for i in ids if i not in self._label_of]
            if missing:
                msg = f"Unknown demonstration id(s) {missing[:5]}; nothing was deleted."
                raise UnknownIdError(msg)
            labels = np.array([self._label_of[i] for i in ids], dtype=np.int64)
            self.index.remove(labels)
            if self.content is not None:
                self.content.remove(labels.tolist())
            for demo_id, label in zip(ids, labels.tolist()):
                demo = self._demos.pop(label)
                del self._label_of[demo_id]
                text = demo.text(self.embed_fields)
                if self._texts.get(text) == label:
                    del self._texts[text]
        return len(ids)

    # -- retrieval -----------------------------------------------------------------------------------
    def _allowed(self, flt: Any) -> np.ndarray | None:
        """Labels passing a compiled filter (under the read lock), or None for no filter."""
        if flt is None:
            return None
        if isinstance(flt, MetadataFilter):
            columns = self.__dict__.setdefault("_columns", MetadataColumns())  # atomic under the GIL; built lazily
            columns.sync(self._demos, self._next_label)
            known = columns.keys()
            unknown = sorted(flt.keys() - known)
            if unknown:
                msg = f"Unknown metadata filter key(s) {unknown}; keys present in the pool: {sorted(known) or 'none'}."
                raise UnknownIdError(msg)
            return columns.allowed(flt)
        return np.array([label for label, d in self._demos.items() if flt(d)], dtype=np.int64)

    def retrieve(
        self,
        query: str,
        k: int = DEFAULT_K,
        *,
        filter: FilterSpec = None,
        min_score: float | None = None,
        mmr: bool = False,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
        fetch_k: int | None = None,
        content_weight: float | None = None,
        content_query: str | None = None,
    ) -> list[Hit]:
        """The ``k`` demonstrations whose task best matches ``query``, best first.

        Args:
            filter: ``{metadata_key: value or [values]}`` (every key must match) or a predicate. Still returns
                ``k`` hits whenever ``k`` demonstrations pass the filter.
            min_score: drop hits whose task cosine is below this.
            mmr: re-rank with maximal marginal relevance for diversity among the ``fetch_k`` best
                (default ``max(4k, 20)``); ``mmr_lambda`` 1.0 = pure relevance, 0.0 = pure diversity.
            content_weight: ``w`` in [0, 1]; default the retriever's ``content_weight``. With ``w > 0`` the
                ``fetch_k`` best task candidates are re-ranked by ``(1 - w) * task cosine + w * content score``
                (the content scorer's relevance of the demonstration's instruction and input to ``query``), and
                each hit's ``score`` is that combined score. ``0`` is pure task match (the paper).
            content_query: the text whose content the demonstrations should match (default ``query``), e.g. the
                instruction followed by its input when only the instruction is embedded for the task.
        """
        return self.retrieve_batch([query], k, filter=filter, min_score=min_score, mmr=mmr, mmr_lambda=mmr_lambda, fetch_k=fetch_k,
                                   content_weight=content_weight,
                                   content_queries=None if content_query is None else [content_query])[0]

    def retrieve_batch(
        self,
        queries: Sequence[str],
        k: int = DEFAULT_K,
        *,
        filter: FilterSpec = None,
        min_score: float | None = None,
        mmr: bool = False,
        mmr_lambda: float = DEFAULT_MMR_LAMBDA,
        fetch_k: int | None = None,
        content_weight: float | None = None,
        content_queries: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> list[list[Hit]]:
        """Like :meth:`retrieve` for many queries, with one encoder call and one index search.

        ``content_queries``: one content text per query (see ``content_query`` of :meth:`retrieve`)."""
        if isinstance(queries, str):
            msg = "retrieve_batch() takes a list of queries; use retrieve() for a single string."
            raise TypeError(msg)
        queries = [check_query(q) for q in queries]
        k = _check_options(k, min_score, mmr_lambda, fetch_k)
        weight = self._check_weight(content_weight)
        flt = compile_filter(filter)
        if not queries:
            return []
        if not self._demos:
            msg = "The retriever is empty; add demonstrations before retrieving."
            raise EmptyPoolError(msg)
        qv = self._check_query_vectors(self.encoder.encode_queries(queries, show_progress=show_progress), queries)
        content = (weight, self.content.query_features(self._content_texts(queries, content_queries))) if weight > 0 else None
        with self._lock.read():
            return self._search(qv, k, flt, min_score, mmr, mmr_lambda, fetch_k, content)

    def _check_query_vectors(self, qv: Any, queries: list[str]) -> np.ndarray:
        """The encoder's query vectors, checked: shape ``(len(queries), dim)``, finite, not all zero."""
        qv = np.asarray(qv)
        if qv.shape != (len(queries), self.encoder.dim):
            msg = f"The encoder returned query vectors of shape {qv.shape} for {len(queries)} queries; expected ({len(queries)}, {self.encoder.dim})."
            raise EncoderMismatchError(msg)
        bad = ~np.isfinite(qv).all(axis=1) | ~np.any(qv, axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            msg = (f"The encoder returned a NaN, infinite or all-zero vector for query {queries[i][:60]!r}; no result can be "
                   "ranked by it. Check the encoder (a custom one must return finite, non-zero float vectors).")
            raise EncoderMismatchError(msg)
        return np.ascontiguousarray(qv, dtype=np.float32)

    @staticmethod
    def _content_texts(queries: list[str], content_queries: Sequence[str] | None) -> list[str]:
        if content_queries is None:
            return queries
        if isinstance(content_queries, str) or len(content_queries) != len(queries):
            msg = (f"content_queries must be a list of {len(queries)} strings (one per query), got "
                   f"{'a string' if isinstance(content_queries, str) else len(content_queries)}.")
            raise ConfigError(msg)
        return [check_query(q) for q in content_queries]

    def _check_weight(self, content_weight: float | None) -> float:
        weight = self.content_weight if content_weight is None else check_content_weight(content_weight)
        if weight > 0 and self.content is None:
            msg = (f"content_weight={weight} needs a content scorer, and this retriever has none; build it with "
                   "content_scorer='bm25' or 'minilm', or retrieve with content_weight=0.")
            raise ConfigError(msg)
        return weight

    def _search(self, qv: np.ndarray, k: int, flt: Any, min_score: float | None, mmr: bool, mmr_lambda: float,
                fetch_k: int | None, content: tuple[float, Any] | None = None) -> list[list[Hit]]:
        """Search, re-rank (content, then MMR) and build hits for encoded queries. Runs under the read lock."""
        allowed = self._allowed(flt)
        available = len(self._demos) if allowed is None else len(allowed)
        if allowed is not None and available == 0:
            # One line on stderr (logging's last-resort handler when none is set up), no source line.
            logger.warning(self._columns.explain(flt) if isinstance(flt, MetadataFilter) else "No demonstration passes the filter predicate.")
            return [[] for _ in range(len(qv))]
        if k > available and not self._warned_short:
            if allowed is None:
                warnings.warn(f"k={k} is larger than the pool ({available}); returning all {available}.", stacklevel=4)
            else:
                logger.warning("k=%d is larger than the demonstrations that pass the filter (%d); returning all %d.", k, available, available)
            self._warned_short = True
        if available == 0:
            return [[] for _ in range(len(qv))]
        if allowed is not None and available == len(self._demos):
            allowed = None  # the filter passes every demonstration: search unrestricted
        search_k = min(available, max(fetch_k or 0, 4 * k, 20)) if mmr or content else min(k, available)
        if isinstance(flt, MetadataFilter) and self.index.supports_metadata:  # scale hook: push the filter down
            scores, labels = self.index.search(qv, search_k, allowed=allowed, where=flt)
        else:
            scores, labels = self.index.search(qv, search_k, allowed=allowed)
        return [self._hits(labels[qi], scores[qi], qi, k, min_score, mmr, mmr_lambda, content) for qi in range(len(qv))]

    def _hits(self, labels: np.ndarray, task: np.ndarray, qi: int, k: int, min_score: float | None, mmr: bool,
              mmr_lambda: float, content: tuple[float, Any] | None) -> list[Hit]:
        """One query's hits from its task candidates: content re-rank, MMR, ``min_score`` on the task cosine."""
        valid = labels >= 0
        labels, task = labels[valid], task[valid]
        scores = task
        if content is not None and len(labels):
            weight, features = content
            scores = (1.0 - weight) * task + weight * self.content.scores(features, qi, labels)
            order = np.argsort(-scores, kind="stable")
            labels, scores, task = labels[order], scores[order], task[order]
        if mmr and len(labels) > 1:
            order = self._mmr(labels, scores, min(k, len(labels)), mmr_lambda)
            labels, scores, task = labels[order], scores[order], task[order]
        hits: list[Hit] = []
        for label, score, cosine in zip(labels[:k].tolist(), scores[:k].tolist(), task[:k].tolist()):
            if min_score is None or cosine >= min_score:
                hits.append(Hit(self._demos[label], float(score), len(hits)))
        return hits

    def _mmr(self, labels: np.ndarray, scores: np.ndarray, k: int, lam: float) -> list[int]:
        """MMR within the task band (:mod:`pie_retriever.retrieval.mmr`): diversity that keeps the task."""
        from pie_retriever.retrieval.mmr import mmr_order

        return mmr_order(self.index.reconstruct(labels), scores, k, lam)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Save to a folder: ``manifest.json``, the index files and ``demonstrations.jsonl``. No pickle.

        The snapshot is taken under the read lock (concurrent adds wait; retrievals go on), written into a
        temporary sibling folder and renamed into place, so a crash mid-save leaves the previous save
        loadable. A target that exists and is not a pie_retriever index is refused. See
        :mod:`pie_retriever.retrieval.persistence`.
        """
        from pie_retriever.retrieval.persistence import save_retriever

        return save_retriever(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: Any = None, *, trust_remote_code: bool | None = None,
             allow_remote: Any = None, encoder_runtime: str | None = None) -> PIERetriever:
        """Load a saved folder. Rebuilds the encoder from the manifest unless one is given; either way the
        encoder's fingerprint must match the one the index was built with. Every file is read once,
        checked against the manifest's sha256 and validated before use.

        The folder is untrusted input (:mod:`pie_retriever.retrieval.trust`): nothing it names runs, is contacted
        or is sent a key unless the caller allows it. ``trust_remote_code=True`` allows model code and engine
        options beyond the safe list; ``allow_remote=True`` (or a list of URLs) lets the manifest's server URL
        or Milvus URI be used. ``None`` reads ``$PIE_TRUST_REMOTE_CODE`` / ``$PIE_ALLOW_REMOTE``, else False.

        ``encoder_runtime``: ``"auto"`` (``None`` reads ``$PIE_ENCODER_RUNTIME``, else auto) encodes the queries of a
        transformer-encoder index (the default model's) with its fp32 ONNX export, same fingerprint, built once into
        the cache, so no torch is imported; ``"torch"`` keeps torch; ``"onnx"`` fails rather than fall back
        (:mod:`pie_retriever.encoders.runtime`)."""
        from pie_retriever.retrieval.persistence import load_retriever

        return load_retriever(cls, path, encoder, trust_remote_code=trust_remote_code, allow_remote=allow_remote,
                              encoder_runtime=encoder_runtime)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[dict[int, Demonstration], int]]:
        """Hold the read lock and yield ``({label: demonstration}, next_label)``: inside the block the demonstrations
        and the index's vectors belong to the same moment (persistence writes the index files there, and
        ``downstream.embed`` reads the vectors there). Writers wait until the block ends: keep it short."""
        with self._lock.read():
            yield dict(self._demos), self._next_label

    def _content_state(self, labels: list[int]) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The manifest's ``content`` entry and the scorer's files for ``labels`` (the caller holds the read lock)."""
        if self.content is None:
            return {"weight": self.content_weight, "scorer": None}, {}
        files = self.content.save(labels)
        entry = {"weight": self.content_weight, "fields": list(CONTENT_FIELDS), **self.content.config(), "files": sorted(files)}
        return entry, files

    def _restore(self, demos: Mapping[int, Demonstration], next_label: int) -> None:
        """Fill an empty retriever (whose index already holds the vectors) with its saved pool."""
        with self._lock.write():
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
