"""The index stage: int64 ids → unit vectors, searched by inner product (= cosine)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pie_retriever.errors import ConfigError


class VectorIndex(ABC):
    """Smallest surface an index needs. Ids are int64 labels chosen by the caller and survive deletes.

    ``search`` returns ``(scores, ids)`` of shape (n_queries, k); missing slots have id -1 and score -inf.
    ``allowed`` restricts the search to those ids (metadata filters); it must still return the best k
    among them.

    Concurrency: the retriever calls ``search``/``reconstruct``/``ids``/``save`` under a shared lock and
    ``add``/``remove`` under an exclusive one, so an index never sees a read concurrent with a write.
    """

    kind: str
    #: True for an index that stores metadata and filters on it itself (a database): the retriever then calls
    #: ``add(ids, vectors, metadata=[dict, ...])`` and ``search(..., allowed=..., where=MetadataFilter)``; the
    #: index may answer from ``where`` or fall back to ``allowed`` (both select the same demonstrations).
    supports_metadata: bool = False

    def bind_encoder(self, fingerprint: str) -> None:
        """Called by the retriever with its encoder's fingerprint; an index stored outside the manifest's
        folder records it there and refuses a different one. The default does nothing."""
        return None

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (used by MMR and by load-time validation)."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every live id, int64."""

    @abstractmethod
    def save(self, folder: Path) -> list[str]:
        """Write the index into ``folder``; return the file names written."""

    def to_files(self) -> dict[str, bytes]:
        """The bytes of the files ``save`` would write, ``{name: bytes}``, taken in memory so that a saver holds
        the retriever's lock only for this copy (the disk writes happen after). Default: ``save`` into a
        temporary folder and read it back; subclasses serialise directly."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="pie-index-") as tmp:
            names = self.save(Path(tmp))
            return {name: (Path(tmp) / name).read_bytes() for name in names}

    @classmethod
    @abstractmethod
    def from_files(cls, files: Mapping[str, bytes], dim: int, options: Mapping[str, Any]) -> VectorIndex:
        """Rebuild from the bytes of the files ``save`` wrote (already hash-checked by the caller)."""

    @classmethod
    def file_names(cls, options: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """``(required, optional)`` names of the files ``save`` writes; a manifest may list nothing else."""
        return [], []

    @classmethod
    def check_options(cls, options: Any, kind: str) -> dict:
        """Validate the options of index ``kind`` read from a manifest (types and ranges); return them as a dict."""
        if options not in (None, {}):
            msg = f"index kind {kind!r} takes no options, got {options!r:.100}."
            raise ConfigError(msg)
        return {}

    def options(self) -> dict:
        """Constructor options stored in the manifest."""
        return {}


def exact_topk(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by inner product with numpy."""
    nq = queries.shape[0]
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    if len(ids) == 0:
        return scores, out_ids
    sims = queries @ vectors.T
    kk = min(k, len(ids))
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    scores[:, :kk] = np.take_along_axis(sims, top, axis=1)
    out_ids[:, :kk] = ids[top]
    return scores, out_ids


def pad_results(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``(n, m)`` results to ``(n, k)`` with score -inf / id -1, and mark faiss' -1 slots with -inf."""
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    return np.where(ids < 0, -np.inf, scores).astype(np.float32), ids.astype(np.int64)


def int_option(options: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """An integer option in ``[low, high]``, or ConfigError naming it."""
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        msg = f"index option {name}={value!r:.40} is invalid; expected an integer in [{low}, {high}]."
        raise ConfigError(msg)
    return value


def load_npy(raw: bytes, name: str) -> np.ndarray:
    """A plain ``.npy`` array from bytes, refusing pickles and a header that declares more data than the file
    holds (which would otherwise ask for that much memory before failing)."""
    import io

    from pie_retriever.errors import IndexLoadError

    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(buf)
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if dtype.hasobject or need > len(raw) - buf.tell():
            what = "objects (a pickle)" if dtype.hasobject else f"{need:,} bytes of data but holds {len(raw) - buf.tell():,}"
            msg = f"{name} is not a plain numpy array file: it declares {what}; refusing to load it."
            raise IndexLoadError(msg)
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except IndexLoadError:
        raise
    except (ValueError, OSError, EOFError, TypeError) as exc:
        msg = f"{name} is not a plain numpy array file ({exc})."
        raise IndexLoadError(msg) from exc
