"""Content relevance for task + content retrieval: how close a demonstration's *content* is to the query's.

:class:`~pie_retriever.retrieval.retriever.PIERetriever` ranks by task match (its instruction encoder). With
``content_weight=w > 0`` it takes the ``fetch_k`` best task candidates and re-ranks them by
``(1 - w) * task_cosine + w * content_score``, where the content score comes from a :class:`ContentScorer`
over the demonstration's instruction and input:

- ``"minilm"`` (:class:`DenseContent`): cosine of plain all-MiniLM-L6-v2 embeddings (the packaged base
  encoder, no prompt, mean pooling): topical closeness, synonyms included. Costs a second encoder pass at
  ``add`` and at query time, and 2 bytes per dimension per demonstration (fp16).
- ``"bm25"`` (:class:`BM25Content`): BM25 over the pool (k1 1.5, b 0.75, bm25s' English stopwords), scaled
  by the best candidate's score to [0, 1]. No model, no stored file: rebuilt from the demonstrations on load.

Every scorer splits its work the way the retriever's lock wants it: ``features``/``query_features`` (slow,
pure, run outside the lock), ``add``/``remove`` (fast, under the write lock), ``scores`` (fast, read-only,
under the read lock).
"""

from __future__ import annotations

import functools
import io
import math
import re
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pie_retriever.errors import ConfigError, IndexLoadError

__all__ = ["CONTENT_FIELDS", "CONTENT_SCORERS", "DEFAULT_CONTENT_SCORER", "DEFAULT_CONTENT_WEIGHT", "BM25Content", "ContentScorer", "DenseContent", "check_content_weight",
           "content_from_config", "make_content_scorer"]

#: The default ``content_weight`` of :class:`~pie_retriever.retrieval.retriever.PIERetriever`: chosen on the dev split of
#: the ICL benchmark (docs/selection.md).
DEFAULT_CONTENT_WEIGHT = 0.0
#: The default content scorer (a key of :data:`CONTENT_SCORERS`).
DEFAULT_CONTENT_SCORER = "bm25"

#: The demonstration fields the content score reads (the query's content is the query string itself).
CONTENT_FIELDS = ("instruction", "input")

#: ``content_scorer=`` choices.
CONTENT_SCORERS: dict[str, str] = {
    "minilm": "cosine of plain all-MiniLM-L6-v2 embeddings of instruction + input (a second encoder pass)",
    "bm25": "BM25 over instruction + input, scaled to [0, 1] by the best candidate (no model, no stored file)",
}


def check_content_weight(value: Any, name: str = "content_weight") -> float:
    """A number in [0, 1] (0 = task match only, 1 = content only among the task candidates)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        msg = f"{name} must be a number in [0, 1] (0 = pure task match, 1 = content only among the task candidates), got {value!r}."
        raise ConfigError(msg)
    return float(value)


class ContentScorer(ABC):
    """Content relevance of pool demonstrations (by label) to queries."""

    kind: str = ""

    @abstractmethod
    def features(self, texts: Sequence[str]) -> Any:
        """Per-text features of demonstrations (pure; called outside the retriever's lock)."""

    @abstractmethod
    def query_features(self, queries: Sequence[str]) -> Any:
        """Features of queries (pure; outside the lock)."""

    @abstractmethod
    def add(self, labels: Sequence[int], features: Any) -> None:
        """Store the features of new demonstrations (under the write lock)."""

    @abstractmethod
    def remove(self, labels: Sequence[int]) -> None:
        """Forget demonstrations (under the write lock)."""

    @abstractmethod
    def scores(self, query_features: Any, row: int, labels: np.ndarray) -> np.ndarray:
        """Content scores in [0, 1] (or cosines) of ``labels`` for query ``row`` (read-only, under the read lock)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """What the manifest records to rebuild the scorer."""

    def save(self, labels: Sequence[int]) -> dict[str, bytes]:
        """Files to store next to the index (name → bytes) for ``labels``; none by default."""
        return {}

    def load(self, files: Mapping[str, bytes], labels: Sequence[int], texts: Sequence[str]) -> None:
        """Restore from saved files (or rebuild from ``texts`` of ``labels``)."""
        self.add(labels, self.features(texts))

    @staticmethod
    def file_names() -> tuple[str, ...]:
        return ()

    def nbytes(self) -> int:
        """Approximate memory held for the pool (not counting a model)."""
        return 0


# -- dense: plain MiniLM -------------------------------------------------------------------------------
class DenseContent(ContentScorer):
    """Cosine similarity of a plain sentence encoder's embeddings, stored as fp16 (default: ``minilm``)."""

    kind = "minilm"
    FILES = ("content_vectors.npy", "content_labels.npy")

    def __init__(self, encoder: Any = None) -> None:
        if encoder is None or isinstance(encoder, str):
            from pie_retriever.encoders.transformer import TransformerEncoder

            encoder = TransformerEncoder(encoder or "minilm", prompt="plain", pooling="mean")
        self.encoder = encoder
        self._vectors = np.zeros((0, encoder.dim), dtype=np.float16)
        self._row: dict[int, int] = {}
        self._free = 0

    def features(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.encoder.encode_documents(list(texts), show_progress=False), dtype=np.float32)
        if vectors.shape != (len(texts), self.encoder.dim) or not np.isfinite(vectors).all():
            msg = f"The content encoder returned {vectors.shape} (or non-finite values) for {len(texts)} texts; nothing was added."
            raise ConfigError(msg)
        return vectors

    def query_features(self, queries: Sequence[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode_queries(list(queries), show_progress=False), dtype=np.float32)

    def add(self, labels: Sequence[int], features: np.ndarray) -> None:
        if self._free > len(self._row):  # more dead rows than live ones: compact first
            self._compact()
        start = len(self._vectors)
        self._vectors = np.concatenate([self._vectors, np.asarray(features, dtype=np.float16)])
        for i, label in enumerate(labels):
            if label in self._row:
                self._free += 1
            self._row[int(label)] = start + i

    def remove(self, labels: Sequence[int]) -> None:
        for label in labels:
            if self._row.pop(int(label), None) is not None:
                self._free += 1

    def _compact(self) -> None:
        labels = list(self._row)
        self._vectors = self._vectors[[self._row[lab] for lab in labels]] if labels else self._vectors[:0]
        self._row = {lab: i for i, lab in enumerate(labels)}
        self._free = 0

    def scores(self, query_features: np.ndarray, row: int, labels: np.ndarray) -> np.ndarray:
        rows = [self._row[int(lab)] for lab in labels]
        return self._vectors[rows].astype(np.float32) @ query_features[row]

    def config(self) -> dict[str, Any]:
        return {"scorer": self.kind, "encoder": {**self.encoder.config(), "fingerprint": self.encoder.fingerprint},
                "dim": int(self.encoder.dim), "dtype": "float16"}

    @staticmethod
    def file_names() -> tuple[str, ...]:
        return DenseContent.FILES

    def save(self, labels: Sequence[int]) -> dict[str, bytes]:
        rows = [self._row[int(lab)] for lab in labels]
        out = {}
        for name, array in zip(self.FILES, (self._vectors[rows], np.asarray(labels, dtype=np.int64))):
            buf = io.BytesIO()
            np.save(buf, array, allow_pickle=False)
            out[name] = buf.getvalue()
        return out

    def load(self, files: Mapping[str, bytes], labels: Sequence[int], texts: Sequence[str]) -> None:
        try:
            vectors = np.load(io.BytesIO(files[self.FILES[0]]), allow_pickle=False)
            saved = np.load(io.BytesIO(files[self.FILES[1]]), allow_pickle=False)
        except (KeyError, ValueError, OSError) as exc:
            msg = f"The content vectors of the index cannot be read ({type(exc).__name__}: {exc}); rebuild the index."
            raise IndexLoadError(msg) from None
        ok = (vectors.dtype == np.float16 and saved.dtype == np.int64 and vectors.ndim == 2 and vectors.shape[1] == self.encoder.dim
              and len(vectors) == len(saved) and sorted(saved.tolist()) == sorted(int(x) for x in labels))
        if not ok or not np.isfinite(vectors.astype(np.float32)).all():
            msg = (f"The content vectors do not match the index (shape {vectors.shape}, {len(saved)} labels for {len(labels)} "
                   f"demonstrations, dim {self.encoder.dim}, finite fp16 expected); refusing to load it. Rebuild the index.")
            raise IndexLoadError(msg)
        self._vectors = vectors
        self._row = {int(lab): i for i, lab in enumerate(saved.tolist())}
        self._free = 0

    def nbytes(self) -> int:
        return int(self._vectors.nbytes) + 100 * len(self._row)


# -- lexical: BM25 --------------------------------------------------------------------------------------
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@functools.lru_cache(maxsize=1)
def _bm25s_english_stopwords() -> frozenset[str]:
    """bm25s' English stopword list, read from its data module alone.

    ``import bm25s`` imports numba (and llvmlite) when they are installed, which every retriever would then
    pay for at start-up, and which breaks a vLLM engine started later in the same process (vLLM scans
    ``sys.modules`` and trips over llvmlite objects). The list itself is a plain tuple in ``bm25s/stopwords.py``.
    """
    import importlib.util

    spec = importlib.util.find_spec("bm25s")
    if spec is None or not spec.submodule_search_locations:
        msg = "the BM25 content scorer needs the package 'bm25s' (a core dependency); reinstall pie-retriever."
        raise ConfigError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "stopwords.py"
    data = importlib.util.spec_from_file_location("_pie_bm25s_stopwords", path)
    module = importlib.util.module_from_spec(data)
    data.loader.exec_module(module)
    return frozenset(module.STOPWORDS_EN)


class BM25Content(ContentScorer):
    """BM25 (Lucene idf) over instruction + input, kept incrementally; scores scaled by the best candidate."""

    kind = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = float(k1), float(b)
        self._stop = _bm25s_english_stopwords()
        self._tf: dict[int, Counter] = {}
        self._len: dict[int, int] = {}
        self._df: Counter = Counter()
        self._total = 0

    def _tokens(self, text: str) -> list[str]:
        return [t for t in _TOKEN.findall(text.lower()) if t not in self._stop]

    def features(self, texts: Sequence[str]) -> list[Counter]:
        return [Counter(self._tokens(t)) for t in texts]

    def query_features(self, queries: Sequence[str]) -> list[list[str]]:
        return [sorted(set(self._tokens(q))) for q in queries]

    def add(self, labels: Sequence[int], features: Sequence[Counter]) -> None:
        for label, tf in zip(labels, features):
            self.remove([label])
            self._tf[int(label)] = tf
            n = sum(tf.values())
            self._len[int(label)] = n
            self._total += n
            self._df.update(tf.keys())

    def remove(self, labels: Sequence[int]) -> None:
        for label in labels:
            tf = self._tf.pop(int(label), None)
            if tf is None:
                continue
            self._total -= self._len.pop(int(label))
            self._df.subtract(tf.keys())
            for t in tf:
                if self._df[t] <= 0:
                    del self._df[t]

    def scores(self, query_features: list[list[str]], row: int, labels: np.ndarray) -> np.ndarray:
        n = len(self._tf)
        out = np.zeros(len(labels), dtype=np.float32)
        if not n:
            return out
        avg = self._total / n or 1.0
        terms = [(t, math.log(1.0 + (n - self._df[t] + 0.5) / (self._df[t] + 0.5))) for t in query_features[row] if t in self._df]
        for j, label in enumerate(labels.tolist()):
            tf, norm = self._tf[label], self.k1 * (1.0 - self.b + self.b * self._len[label] / avg)
            out[j] = sum(idf * tf[t] * (self.k1 + 1.0) / (tf[t] + norm) for t, idf in terms if t in tf)
        top = out.max() if len(out) else 0.0
        return out / top if top > 0 else out

    def config(self) -> dict[str, Any]:
        return {"scorer": self.kind, "k1": self.k1, "b": self.b, "stopwords": "en"}

    def nbytes(self) -> int:
        return sum(64 + 80 * len(tf) for tf in self._tf.values()) + 80 * len(self._df)


def make_content_scorer(spec: Any) -> ContentScorer | None:
    """``None``, a :class:`ContentScorer`, or a name of :data:`CONTENT_SCORERS`."""
    if spec is None or isinstance(spec, ContentScorer):
        return spec
    if spec == "minilm":
        return DenseContent()
    if spec == "bm25":
        return BM25Content()
    msg = f"content_scorer must be None, a ContentScorer or one of {list(CONTENT_SCORERS)}, got {spec!r:.60}."
    raise ConfigError(msg)


def content_from_config(config: Mapping[str, Any], where: str) -> ContentScorer:
    """Rebuild a scorer from the manifest's ``content`` entry (checked by :mod:`pie_retriever.retrieval.manifest`)."""
    if config.get("scorer") == "bm25":
        return BM25Content(k1=config.get("k1", 1.5), b=config.get("b", 0.75))
    from pie_retriever.encoders.base import encoder_from_config

    saved = dict(config.get("encoder") or {})
    fingerprint = saved.pop("fingerprint", None)
    encoder = encoder_from_config(saved)
    if encoder.fingerprint != fingerprint:
        msg = (f"{where}: the content encoder rebuilt from the manifest has fingerprint {encoder.fingerprint}, the index was "
               f"built with {fingerprint}. Use the same model, or rebuild the index.")
        raise IndexLoadError(msg)
    return DenseContent(encoder)
