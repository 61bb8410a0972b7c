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

from .errors import DuplicateIdError, EmptyPoolError, EncoderMismatchError, IndexLoadError, PIEError
from .types import Demonstration, Hit

logger = logging.getLogger(__name__)

FORMAT_NAME = "pie-retriever-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEMOS_FILE = "demonstrations.jsonl"
EMBED_FIELDS = ("instruction", "input", "output")

FilterSpec = Mapping[str, Any] | Callable[[Demonstration], bool] | None


def check_query(query: Any) -> str:
    if not isinstance(query, str):
        msg = f"query must be a string, got {type(query).__name__} ({query!r:.60})."
        raise TypeError(msg)
    if not query.strip():
        msg = "query is empty; pass the instruction you want demonstrations for."
        raise ValueError(msg)
    return query


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        msg = f"k must be a positive integer, got {k!r}."
        raise ValueError(msg)
    return int(k)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pie-retriever", "numpy", "faiss-cpu", "torch", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


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
        fields = tuple([embed_fields] if isinstance(embed_fields, str) else embed_fields)
        bad = [f for f in fields if f not in EMBED_FIELDS]
        if not fields or bad:
            msg = f"embed_fields must be a non-empty subset of {EMBED_FIELDS}, got {fields!r}."
            raise ValueError(msg)
        self.embed_fields = fields
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
            except PIEError as exc:
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
                raise PIEError(msg)
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
        n = self._next_label + len(taken)
        while f"demo-{n}" in self._label_of or f"demo-{n}" in taken:
            n += 1
        return f"demo-{n}"

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
            raise ValueError(msg)
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
        crash mid-save leaves the previous save loadable.
        """
        target = Path(path).expanduser().resolve()
        if target.exists() and not (target / MANIFEST).is_file():
            if not target.is_dir() or any(target.iterdir()):
                msg = f"{target} exists and is not a pie_retriever index; refusing to overwrite it. Choose another path."
                raise IndexLoadError(msg)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            labels = list(self._demos)
            files = self.index.save(tmp)
            with (tmp / DEMOS_FILE).open("w", encoding="utf-8") as fh:
                for label in labels:
                    row = self._demos[label].to_dict()
                    row["_label"] = label
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            files.append(DEMOS_FILE)
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "library_versions": _library_versions(),
                "encoder": {**self.encoder.config(), "fingerprint": self.encoder.fingerprint},
                "dim": int(self.encoder.dim),
                "metric": "inner_product",
                "normalized": True,
                "index": {"kind": self.index.kind, "options": self.index.options()},
                "embed_fields": list(self.embed_fields),
                "dedupe": self.dedupe,
                "count": len(labels),
                "next_label": self._next_label,
                "files": {name: _sha256(tmp / name) for name in files},
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
            for f in tmp.iterdir():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
            backup = None
            if target.exists():
                backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(target, backup)
            os.rename(tmp, target)
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, encoder: Any = None) -> PIERetriever:
        """Load a saved folder. Rebuilds the encoder from the manifest unless one is given; either way the
        encoder's fingerprint must match the one the index was built with."""
        from .encoders.base import encoder_from_config
        from .index import load_index

        folder = Path(path).expanduser().resolve()
        folder = _recover(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            msg = f"{folder} is not a pie_retriever index: it has no {MANIFEST}. Build one with PIERetriever.save() or `pie-retriever index`."
            raise IndexLoadError(msg)
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            msg = f"{manifest_path} is not valid JSON ({exc}); the folder is damaged. Rebuild the index."
            raise IndexLoadError(msg) from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            msg = f"{manifest_path} is not a pie_retriever manifest (format={manifest.get('format') if isinstance(manifest, dict) else None!r}, expected {FORMAT_NAME!r})."
            raise IndexLoadError(msg)
        if manifest.get("format_version") != FORMAT_VERSION:
            msg = (
                f"{folder} was saved with index format version {manifest.get('format_version')!r}; this library reads "
                f"version {FORMAT_VERSION}. Rebuild the index with this version (`pie-retriever index`)."
            )
            raise IndexLoadError(msg)
        for name, digest in manifest.get("files", {}).items():
            f = folder / name
            if not f.is_file():
                msg = f"{folder} is incomplete: {name} is missing. Rebuild the index."
                raise IndexLoadError(msg)
            actual = _sha256(f)
            if actual != digest:
                msg = f"{f} was modified after saving (sha256 {actual[:12]}…, manifest says {digest[:12]}…); refusing to load it."
                raise IndexLoadError(msg)
        saved = dict(manifest["encoder"])
        fingerprint = saved.pop("fingerprint")
        if encoder is None:
            encoder = encoder_from_config(saved)
        if encoder.fingerprint != fingerprint:
            msg = (
                f"Encoder mismatch: the index at {folder} was built with encoder fingerprint {fingerprint} "
                f"({saved.get('type')} {saved.get('model', '')!s}), but the encoder given has {encoder.fingerprint} "
                f"({encoder.config().get('type')} {encoder.config().get('model', '')!s}). Use the same model, prompt and "
                "pooling, or rebuild the index."
            )
            raise EncoderMismatchError(msg)
        if encoder.dim != manifest["dim"]:
            msg = f"Encoder dim {encoder.dim} does not match the index dim {manifest['dim']}."
            raise EncoderMismatchError(msg)
        index = load_index(folder, manifest["index"]["kind"], manifest["dim"], manifest["index"].get("options", {}))
        retriever = cls(encoder, index=index, embed_fields=manifest["embed_fields"], dedupe=manifest.get("dedupe", False))
        with (folder / DEMOS_FILE).open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                label = int(row.pop("_label"))
                demo = Demonstration.from_any(row)
                retriever._demos[label] = demo
                retriever._label_of[demo.id] = label
                retriever._texts.setdefault(demo.text(retriever.embed_fields), label)
        retriever._next_label = int(manifest["next_label"])
        if len(retriever._demos) != manifest["count"] or len(index) != manifest["count"]:
            msg = f"{folder} is inconsistent: manifest count {manifest['count']}, {len(retriever._demos)} demonstrations, {len(index)} vectors."
            raise IndexLoadError(msg)
        return retriever

    def __repr__(self) -> str:
        cfg = self.encoder.config()
        return f"PIERetriever(n={len(self)}, encoder={cfg.get('type')}:{cfg.get('model', '')}, index={self.index.kind})"

    def as_langchain_retriever(self, **kwargs: Any) -> Any:
        """A LangChain ``BaseRetriever`` over this pool (needs the ``langchain`` extra)."""
        from pie_retriever.integrations.langchain import PIELangChainRetriever

        return PIELangChainRetriever(retriever=self, **kwargs)


def _recover(folder: Path) -> Path:
    """If a save was interrupted between its two renames, the previous index sits in a backup folder."""
    if folder.exists():
        return folder
    backups = sorted(folder.parent.glob(f".{folder.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for backup in backups:
        if (backup / MANIFEST).is_file():
            logger.warning("Index %s is missing but an interrupted save left %s; restoring it.", folder, backup)
            os.rename(backup, folder)
            return folder
    msg = f"Index folder {folder} does not exist. Build it first with `pie-retriever index POOL -o {folder}` or PIERetriever.save()."
    raise IndexLoadError(msg)
