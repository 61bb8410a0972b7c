"""faiss inner-product index: exact ``flat`` (default) or approximate ``hnsw``, behind ``IndexIDMap2``.

Vectors are stored as ``VECTOR_STORAGE`` says (option ``vectors``): fp32 (``IndexFlatIP`` / ``IndexHNSWFlat``) or
through faiss' scalar quantizer (``IndexScalarQuantizer`` / ``IndexHNSWSQ``) as fp16 (the default) or int8. A
saved index without the option was written before it existed and is read as fp32.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from pie_retriever._threads import resolve_threads
from pie_retriever._util import check_choice
from pie_retriever.errors import ConfigError, IndexLoadError
from pie_retriever.index.base import VectorIndex, int_option, load_npy, pad_results
from pie_retriever.index.block_search import BLOCK_MIN_QUERIES, block_search

logger = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
DELETED_FILE = "deleted.npy"
#: An HNSW graph is rebuilt without its deleted nodes once they are this share of it.
COMPACT_RATIO = 0.25
#: ``vectors`` option: how each vector is stored (bytes per 384-d vector in brackets).
VECTOR_STORAGE: dict[str, str] = {
    "fp32": "float32, exact (1,536 B)",
    "fp16": "float16 through faiss' scalar quantizer (768 B); recall@4 1.000 against fp32 on the measured pools",
    "int8": "8 bits per dimension (384 B), ranges per dimension from the first batch added; recall@4 about 0.98",
}
DEFAULT_VECTORS = "fp16"
#: int8 ranges are trained on the first batch added when it has at least this many vectors (else [-1, 1]).
INT8_MIN_TRAIN = 256
#: int8: once more than this share of the stored vectors were clipped to ranges trained earlier, the ranges are
#: trained again over all of them (a few outliers are clipped; a later add from another region is not).
INT8_RETRAIN_SHARE = 0.01
#: A saved index whose options do not name its storage was written before the option existed.
LEGACY_VECTORS = "fp32"
_SQ_TYPES = {"fp16": "QT_fp16", "int8": "QT_8bit"}
_HNSW_OPTIONS = ("hnsw_m", "ef_search", "ef_construction")
#: A filtered hnsw search that leaves at most this share of the pool (or 2,048 vectors) is answered exactly over the
#: vectors that pass; above it, the graph is searched with the filter as an ID selector.
HNSW_EXACT_FILTER_SHARE = 0.1


class FaissIndex(VectorIndex):
    """faiss index with caller-chosen int64 ids.

    ``flat`` is exact. ``hnsw`` (``hnsw_m`` links per node, ``ef_search`` breadth) is approximate and faster
    on large pools. faiss cannot remove nodes from an HNSW graph, so ``remove`` marks ids deleted (searches
    skip them through an ID selector) and rebuilds the graph only once a quarter of it is deleted: deleting
    is O(1) per id instead of a rebuild per call.
    """

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 64, ef_construction: int = 80,
                 vectors: str = DEFAULT_VECTORS) -> None:
        import faiss  # a core dependency (faiss-cpu)

        self.faiss = faiss
        self._dim = int(dim)
        self.kind = kind
        self.hnsw_m, self.ef_search, self.ef_construction = hnsw_m, ef_search, ef_construction
        self.vectors = check_choice("vectors", vectors, VECTOR_STORAGE)
        self.index = self._new()
        self._deleted = np.zeros(0, dtype=np.int64)  # hnsw tombstones, sorted
        #: batches of at least this many queries over a flat index are scored block by block with BLAS
        #: (``block_search``); a benchmark sets it out of reach to time faiss' own scan on the same index.
        self.block_min_queries = BLOCK_MIN_QUERIES
        self._clipped = 0  # int8: vectors added since training that fell outside the ranges (clipped)

    def _new(self) -> Any:
        faiss = self.faiss
        metric = faiss.METRIC_INNER_PRODUCT
        qtype = getattr(faiss.ScalarQuantizer, _SQ_TYPES[self.vectors]) if self.vectors in _SQ_TYPES else None
        if self.kind == "flat":
            inner = faiss.IndexFlatIP(self._dim) if qtype is None else faiss.IndexScalarQuantizer(self._dim, qtype, metric)
        else:
            if qtype is None:
                inner = faiss.IndexHNSWFlat(self._dim, self.hnsw_m, metric)
            else:
                inner = faiss.IndexHNSWSQ(self._dim, qtype, self.hnsw_m, metric)
            inner.hnsw.efSearch = self.ef_search
            inner.hnsw.efConstruction = self.ef_construction
        return faiss.IndexIDMap2(inner)

    def _train(self, vectors: np.ndarray) -> None:
        """int8 storage: per-dimension ranges from the first vectors added when there are at least
        ``INT8_MIN_TRAIN`` of them (widened by 10% of each range plus 0.5/sqrt(dim) so later vectors mostly fit;
        values outside are clipped), else the whole [-1, 1] a unit vector's coordinates can take."""
        if len(vectors) >= INT8_MIN_TRAIN:
            lo, hi = vectors.min(axis=0), vectors.max(axis=0)
            pad = 0.1 * (hi - lo) + 0.5 / np.sqrt(self._dim)
            bounds = np.clip(np.stack([lo - pad, hi + pad]), -1.0, 1.0)
        else:
            bounds = np.stack([np.full(self._dim, -1.0), np.full(self._dim, 1.0)])
        self.index.train(np.ascontiguousarray(np.concatenate([vectors, bounds]), dtype=np.float32))

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self._deleted)

    def options(self) -> dict:
        if self.kind == "flat":
            return {"vectors": self.vectors}
        return {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "ef_construction": self.ef_construction, "vectors": self.vectors}

    @classmethod
    def check_options(cls, options: Any, kind: str) -> dict:
        """Validated options; ``vectors`` is kept only when given (absent: the constructor's default when creating,
        ``LEGACY_VECTORS`` when loading an index saved before the option existed)."""
        if not isinstance(options, dict):
            msg = f"index options must be a dict, got {type(options).__name__}."
            raise ConfigError(msg)
        storage = {"vectors": check_choice("vectors", options["vectors"], VECTOR_STORAGE)} if "vectors" in options else {}
        if kind == "flat":
            if set(options) - {"vectors"}:
                msg = f"index kind 'flat' takes no options other than 'vectors' ({', '.join(VECTOR_STORAGE)}), got {options!r:.100}."
                raise ConfigError(msg)
            return storage
        unknown = sorted(set(options) - {*_HNSW_OPTIONS, "vectors"})
        if unknown:
            msg = f"unknown index option(s) {unknown}; known: {', '.join(_HNSW_OPTIONS)}, vectors."
            raise ConfigError(msg)
        return {"hnsw_m": int_option(options, "hnsw_m", 32, 2, 256),
                "ef_search": int_option(options, "ef_search", 64, 1, 100_000),
                "ef_construction": int_option(options, "ef_construction", 80, 1, 100_000), **storage}

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if not self.index.is_trained and len(vectors):
            self._train(vectors)
        elif self.vectors == "int8" and len(vectors):
            self._clipped += self._outside_ranges(vectors)
            if self._clipped > INT8_RETRAIN_SHARE * (int(self.index.ntotal) + len(vectors)):
                self._retrain(ids, vectors)
                return
        self.index.add_with_ids(vectors, ids)

    def _outside_ranges(self, vectors: np.ndarray) -> int:
        """How many of ``vectors`` have a coordinate outside the int8 ranges trained so far (by more than one step)."""
        trained = self.faiss.vector_to_array(self._storage().sq.trained)
        lo, width = trained[: self._dim], trained[self._dim:]
        step = width / 255.0
        return int(np.count_nonzero(((vectors < lo - step) | (vectors > lo + width + step)).any(axis=1)))

    def _retrain(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """int8 storage whose new vectors fall outside the first batch's ranges: train the ranges again over every
        live vector (the stored ones decoded) and the new ones, and re-encode all of them, instead of clipping the
        new ones (which silently cost recall: 0.66–0.79 recall@5 after a narrow first batch)."""
        keep = self.ids()
        old = self.reconstruct(keep)
        logger.warning("int8 storage: %d vectors added since the value ranges were trained fall outside them (%d in this "
                       "add of %d); retraining the ranges over all %d vectors and re-encoding them.", self._clipped,
                       self._outside_ranges(vectors), len(vectors), len(keep) + len(vectors))
        self._clipped = 0
        all_ids, all_vectors = np.concatenate([keep, ids]), np.concatenate([old, vectors])
        self.index = self._new()
        self._deleted = np.zeros(0, dtype=np.int64)
        self._train(all_vectors)
        self.index.add_with_ids(all_vectors, all_ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if self.kind == "flat":
            self.index.remove_ids(ids)
            return
        self._deleted = np.union1d(self._deleted, ids)
        if len(self._deleted) >= COMPACT_RATIO * max(int(self.index.ntotal), 1):
            self.compact()

    def compact(self) -> None:
        """Rebuild an HNSW graph without its deleted nodes (a no-op for ``flat``)."""
        if not len(self._deleted):
            return
        keep = self.ids()
        vectors = self.reconstruct(keep) if len(keep) else np.zeros((0, self._dim), dtype=np.float32)
        self.index = self._new()
        self._deleted = np.zeros(0, dtype=np.int64)
        if len(keep):
            self.add(keep, vectors)

    def ids(self) -> np.ndarray:
        all_ids = self.faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return all_ids[~np.isin(all_ids, self._deleted)] if len(self._deleted) else all_ids

    def _params(self, k: int, allowed: np.ndarray | None = None) -> Any:
        """Search parameters: for hnsw ``efSearch >= k`` (a smaller breadth returns fewer than k hits); an ID selector
        for the tombstones and for ``allowed`` (a bitmap over labels, O(1) per stored vector)."""
        params = self.faiss.SearchParametersHNSW() if self.kind == "hnsw" else self.faiss.SearchParameters()
        if self.kind == "hnsw":
            params.efSearch = max(self.ef_search, 2 * k if len(self._deleted) or allowed is not None else k)
        keep: list[Any] = []
        sel = None
        if len(self._deleted):
            batch = self.faiss.IDSelectorBatch(self._deleted)
            sel = self.faiss.IDSelectorNot(batch)
            keep += [batch, sel]
        if allowed is not None:
            bits = np.packbits(self._label_mask(allowed), bitorder="little")
            bitmap = self.faiss.IDSelectorBitmap(len(bits), self.faiss.swig_ptr(bits))  # n = bytes of the bitmap
            keep += [bits, bitmap]
            sel = bitmap if sel is None else self.faiss.IDSelectorAnd(bitmap, sel)
            keep.append(sel)
        if sel is None and self.kind == "flat":
            return None
        params.sel = sel
        params._keep = keep  # the selectors (and the bitmap's bytes) must outlive the search: swig does not own them
        return params

    @staticmethod
    def _label_mask(allowed: np.ndarray) -> np.ndarray:
        mask = np.zeros(max(int(allowed.max()) + 1 if len(allowed) else 0, 1), dtype=bool)
        mask[allowed[allowed >= 0]] = True
        return mask

    def _storage(self) -> Any:
        """The inner index whose codes hold the vectors, row for row with ``index.id_map``."""
        inner = self.faiss.downcast_index(self.index.index)
        return inner if self.kind == "flat" else self.faiss.downcast_index(inner.storage)

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the live (and ``allowed``) vectors, decoded block by block and scored with BLAS."""
        labels = self.faiss.vector_to_array(self.index.id_map).astype(np.int64)
        keep = None
        if allowed is not None:
            mask = self._label_mask(allowed)
            keep = np.zeros(len(labels), dtype=bool)
            inside = labels < len(mask)
            keep[inside] = mask[labels[inside]]
        if len(self._deleted):
            live = ~np.isin(labels, self._deleted)
            keep = live if keep is None else keep & live
        with omp_threads(self.faiss, resolve_threads(None, len(queries))):
            return block_search(self.faiss, self._storage(), labels, queries, k, keep)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k. Exact for ``flat``: batches of at least ``BLOCK_MIN_QUERIES`` are scored with BLAS block by block
        (:mod:`~pie_retriever.index.block_search`; faiss 1.15 itself uses BLAS only from some hundreds of queries);
        single queries use faiss' scan, with ``allowed`` as an ID selector. ``hnsw`` returns ``min(k, live)`` hits
        (exact search fills a query the graph leaves short) and answers a filter that leaves few vectors exactly."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(self)
        if n == 0 or (allowed is not None and not len(allowed)):
            return (np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64))
        allowed = None if allowed is None else np.asarray(allowed, dtype=np.int64)
        batched = len(queries) >= self.block_min_queries
        if self.kind == "flat" and batched:
            return self._exact(queries, k, allowed)
        if self.kind == "hnsw" and allowed is not None and len(allowed) <= max(2048, HNSW_EXACT_FILTER_SHARE * n):
            return self._exact(queries, k, allowed)
        want = min(k, n if allowed is None else len(allowed))
        params = self._params(k, allowed)
        with omp_threads(self.faiss, resolve_threads(None, len(queries))):
            if params is None:
                scores, ids = self.index.search(queries, want)
            else:
                scores, ids = self.index.search(queries, want, params=params)
        scores, ids = pad_results(scores, ids, k)
        short = (ids >= 0).sum(axis=1) < want
        if short.any():  # hnsw: the graph walk found fewer than k (small ef_search, a selective filter, tombstones)
            scores[short], ids[short] = self._exact(queries[short], k, allowed)
        return scores, ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.ascontiguousarray(self.index.reconstruct_batch(ids), dtype=np.float32)

    def save(self, folder: Path) -> list[str]:
        self.faiss.write_index(self.index, str(folder / INDEX_FILE))
        if len(self._deleted):
            np.save(folder / DELETED_FILE, self._deleted, allow_pickle=False)
            return [INDEX_FILE, DELETED_FILE]
        return [INDEX_FILE]

    def to_files(self) -> dict[str, bytes]:
        files = {INDEX_FILE: self.faiss.serialize_index(self.index).tobytes()}
        if len(self._deleted):
            files[DELETED_FILE] = _npy_bytes(self._deleted)
        return files

    @classmethod
    def file_names(cls, options: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        return [INDEX_FILE], [DELETED_FILE]

    def _expected_inner(self) -> tuple[str, int | None]:
        """The faiss class name of the inner index this kind and storage write, and its scalar quantizer type."""
        sq = getattr(self.faiss.ScalarQuantizer, _SQ_TYPES[self.vectors]) if self.vectors in _SQ_TYPES else None
        if self.kind == "hnsw":
            return ("IndexHNSWFlat" if sq is None else "IndexHNSWSQ"), sq
        return ("IndexFlatIP" if sq is None else "IndexScalarQuantizer"), sq

    def _check_inner(self, loaded: Any) -> Any:
        expected, qtype = self._expected_inner()
        inner = self.faiss.downcast_index(loaded.index) if isinstance(loaded, self.faiss.IndexIDMap2) else None
        name = type(inner).__name__
        ok = inner is not None and (name == expected or (expected == "IndexFlatIP" and name == "IndexFlat"))
        if ok and qtype is not None:
            storage = inner if self.kind == "flat" else self.faiss.downcast_index(inner.storage)
            ok = getattr(getattr(storage, "sq", None), "qtype", None) == qtype
        if not ok:
            msg = (f"{INDEX_FILE} holds a {type(loaded).__name__} / {name}, not the IndexIDMap2 over {expected} that a "
                   f"'{self.kind}' index with {self.vectors} vectors writes.")
            raise IndexLoadError(msg)
        return inner

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], dim: int, options: Mapping[str, Any], kind: str = "flat") -> FaissIndex:
        index = cls(dim, kind=kind, **{"vectors": LEGACY_VECTORS, **options})
        try:
            loaded = _read_guarded(index.faiss, files[INDEX_FILE])
        except RuntimeError as exc:
            msg = f"{INDEX_FILE} is not a readable faiss index ({str(exc).splitlines()[0][:120]})."
            raise IndexLoadError(msg) from exc
        except MemoryError as exc:  # a size field far beyond the file: faiss asked for that much memory
            msg = f"{INDEX_FILE} declares more data than it holds ({len(files[INDEX_FILE]):,} bytes); refusing to load it."
            raise IndexLoadError(msg) from exc
        inner = index._check_inner(loaded)
        if loaded.d != dim or inner.metric_type != index.faiss.METRIC_INNER_PRODUCT:
            msg = f"{INDEX_FILE} holds {loaded.d}-d vectors with metric {inner.metric_type}; the manifest says dim={dim}, inner product."
            raise IndexLoadError(msg)
        if loaded.id_map.size() != loaded.ntotal:
            msg = f"{INDEX_FILE}: id_map size ({loaded.id_map.size()}) does not match ntotal ({loaded.ntotal})."
            raise IndexLoadError(msg)
        if kind == "hnsw":
            inner.hnsw.efSearch = index.ef_search
        index.index = loaded
        if DELETED_FILE in files:
            index._deleted = _deleted_ids(files[DELETED_FILE], index)
        return index


@contextlib.contextmanager
def omp_threads(faiss: Any, n: int) -> Iterator[None]:
    """Run a faiss call with ``n`` OpenMP threads (the policy of :mod:`pie_retriever._threads`: 1 for a single
    query). OpenMP keeps this setting per calling thread, so concurrent searches from other threads are unaffected.
    On a loaded machine a second OpenMP thread mostly waits for a core, and a single-query search then takes tens
    of milliseconds instead of well under one (see docs/speed.md, "faiss threads")."""
    before = faiss.omp_get_max_threads()
    if n != before:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            faiss.omp_set_num_threads(before)


def _deleted_ids(raw: bytes, index: FaissIndex) -> np.ndarray:
    deleted = load_npy(raw, DELETED_FILE)
    stored = index.faiss.vector_to_array(index.index.id_map)
    if deleted.ndim != 1 or deleted.dtype != np.int64 or not np.isin(deleted, stored).all():
        msg = f"{DELETED_FILE} must be a 1-d int64 array of ids stored in {INDEX_FILE}."
        raise IndexLoadError(msg)
    return np.unique(deleted)


def _npy_bytes(array: np.ndarray) -> bytes:
    """``array`` in the .npy format (what ``np.save`` writes), in memory."""

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


_CHUNK = 1 << 20
_SLACK = 1 << 20  # header fields that are not lengths (dim, code size, the constant 2**20) stay below this


def _read_guarded(faiss: Any, raw: bytes) -> Any:
    """``faiss.deserialize_index`` that refuses a size field larger than the rest of the file.

    faiss reads a vector's length (8 bytes) and allocates (and zero-fills) that much before reading the data,
    so a tampered length of 2**34 costs 16 GB and tens of seconds before the read fails. Here every 8-byte read
    is checked before faiss sees it: a length cannot exceed the bytes left by more than 1 MiB (the slack lets
    header fields that are not lengths pass, so at most 8 x (file + 1 MiB) bytes can be asked for). Reads that
    are data rather than a length (the tail of a chunked read, the element of a one-to-eight-element vector) are
    not checked."""
    state = {"pos": 0, "prev": None, "prev_n": 0}

    def read(n: int) -> bytes:
        pos = state["pos"]
        chunk = raw[pos:pos + n]
        state["pos"] = pos + len(chunk)
        if n == 8 and len(chunk) == 8 and state["prev_n"] != _CHUNK and state["prev"] not in (1, 2, 4, 8):
            value = int.from_bytes(chunk, "little")
            if value > len(raw) - state["pos"] + _SLACK:
                msg = f"a length field of {value:,} at byte {pos} is larger than the {len(raw) - state['pos']:,} bytes left"
                raise ValueError(msg)
        state["prev"] = int.from_bytes(chunk, "little") if n == 8 and len(chunk) == 8 else None
        state["prev_n"] = n
        return chunk

    try:
        return faiss.read_index(faiss.PyCallbackIOReader(read, _CHUNK))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeError(first.split("ValueError: ")[-1][:200]) from exc
