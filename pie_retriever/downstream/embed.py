"""Pools in, vectors out: read a pool file or a saved index, build the encoder, embed (with an optional cache).

Every downstream use (select, compress, compare, map, tasks) starts here: :func:`load_items` returns the
demonstrations and their float32 L2-normalised vectors, one row per demonstration, in pool order.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever.encoders.base import Encoder, l2_normalize
from pie_retriever.errors import ConfigError
from pie_retriever.types import Demonstration

__all__ = ["Items", "encode_texts", "is_index_folder", "load_items", "make_encoder", "task_labels"]

#: Where the task labels of ``task_labels`` come from.
LABEL_SOURCES: dict[str, str] = {
    "auto": "metadata.task when every demonstration has one, else silver labels from the verb|noun labeler",
    "gold": "metadata.task of every demonstration (an error when one is missing)",
    "silver": "the verb|noun labeler (pie_retriever.labeling; needs the train extra's spaCy model)",
}


@dataclass
class Items:
    """A pool and its vectors: ``demos[i]`` is embedded as ``vectors[i]`` (float32, unit rows)."""

    demos: list[Demonstration]
    vectors: np.ndarray
    encoder_name: str

    @property
    def texts(self) -> list[str]:
        return [d.instruction for d in self.demos]

    def __len__(self) -> int:
        return len(self.demos)


def make_encoder(model: Any = None) -> Encoder:
    """An :class:`Encoder` from ``None`` (the library default, :data:`~pie_retriever.encoders.models.DEFAULT_MODEL`,
    ``pie-minilm-lc``), a model spec string, or an encoder."""
    if isinstance(model, Encoder):
        return model
    if model is not None and not isinstance(model, (str, os.PathLike)):
        msg = f"model must be None, a model spec (e.g. 'minilm', 'pie-minilm', a folder) or an Encoder, got {type(model).__name__}."
        raise ConfigError(msg)
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(None if model is None else os.fspath(model))


def encoder_name(encoder: Encoder) -> str:
    cfg = encoder.config()
    return str(cfg.get("model") or cfg.get("type") or type(encoder).__name__)


def _cache_key(encoder: Encoder, texts: Sequence[str]) -> str:
    h = hashlib.sha256(encoder.fingerprint.encode())
    for t in texts:
        h.update(b"\x00" + t.encode("utf-8"))
    return h.hexdigest()[:24]


def encode_texts(texts: Sequence[str], encoder: Encoder, *, cache_dir: str | os.PathLike | None = None,
                 show_progress: bool | None = None) -> np.ndarray:
    """Embed ``texts`` as documents. With ``cache_dir``, vectors are kept in ``<key>.npy`` (key: encoder
    fingerprint + texts), so a second call on the same pool and encoder reads them instead of encoding."""
    texts = list(texts)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_cache_key(encoder, texts)}.npy"
        if path.is_file():
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape == (len(texts), encoder.dim):
                return vectors
    vectors = l2_normalize(encoder.encode_documents(texts, show_progress=show_progress))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(tmp, vectors, allow_pickle=False)
        os.replace(tmp, path)
    return vectors


def is_index_folder(path: str | os.PathLike) -> bool:
    from pie_retriever.retrieval.persistence import MANIFEST

    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def _from_index(path: str | os.PathLike) -> Items:
    """The demonstrations and stored vectors of a saved index (no re-encoding)."""
    from pie_retriever.retrieval.cli import saved_encoder
    from pie_retriever.retrieval.retriever import PIERetriever

    retriever = PIERetriever.load(path, encoder=saved_encoder(path))  # stored vectors only: no model to load
    with retriever.snapshot() as (by_label, _):  # demonstrations and vectors of the same moment
        labels = np.fromiter(by_label, dtype=np.int64, count=len(by_label))
        vectors = retriever.index.reconstruct(labels)
        demos = [by_label[int(i)] for i in labels]
    return Items(demos, l2_normalize(vectors), encoder_name(retriever.encoder))


def load_items(source: str | os.PathLike | Sequence[Any], model: Any = None, *, label_field: str | None = None,
               cache_dir: str | os.PathLike | None = None, show_progress: bool | None = None) -> Items:
    """Demonstrations and vectors from a pool file (JSONL, JSON list, Alpaca, IEB), a saved index folder (its
    stored vectors; ``model`` is ignored) or a list of demonstrations / dicts / strings (encoded with ``model``)."""
    if isinstance(source, (str, os.PathLike)):
        if is_index_folder(source):
            return _from_index(source)
        from pie_retriever.pool.pools import load_pool

        demos = load_pool(source, label_field=label_field)
    else:
        demos = [d if isinstance(d, Demonstration) else Demonstration.from_any(d) if isinstance(d, dict)
                 else Demonstration(instruction=d) for d in source]
    if not demos:
        msg = "The pool is empty; pass at least one demonstration."
        raise ConfigError(msg)
    encoder = make_encoder(model)
    vectors = encode_texts([d.instruction for d in demos], encoder, cache_dir=cache_dir, show_progress=show_progress)
    return Items(demos, vectors, encoder_name(encoder))


def task_labels(demos: Sequence[Demonstration], source: str = "auto", *, cache: str | os.PathLike | None = None) -> list[str]:
    """One task label per demonstration, from ``LABEL_SOURCES[source]``; silver labels can be cached in a JSON file."""
    from pie_retriever._util import check_choice

    check_choice("label source", source, LABEL_SOURCES)
    gold = [d.metadata.get("task") for d in demos]
    if source == "gold" or (source == "auto" and all(isinstance(g, str) and g for g in gold)):
        missing = [i for i, g in enumerate(gold) if not isinstance(g, str) or not g]
        if missing:
            msg = (f"{len(missing)} of {len(demos)} demonstrations have no metadata.task (first: #{missing[0]}); "
                   "pass labels='silver' to label them with the verb|noun labeler, or add the labels.")
            raise ConfigError(msg)
        return [str(g) for g in gold]
    return silver_labels([d.instruction for d in demos], cache=cache)


def silver_labels(texts: Sequence[str], *, cache: str | os.PathLike | None = None) -> list[str]:
    """The labeler's ``verb|noun`` per text; with ``cache`` (a JSON file) labels are read/written by text."""
    from pie_retriever.labeling.api import label_instructions

    texts = list(texts)
    known: dict[str, str] = {}
    if cache is not None and Path(cache).is_file():
        known = _read_labels_cache(Path(cache))
    todo = sorted({t for t in texts if t not in known})
    if todo:
        known.update(zip(todo, label_instructions(todo)))
        if cache is not None:
            from pie_retriever._util import atomic_write_text

            atomic_write_text(cache, json.dumps(known, ensure_ascii=False))
    return [known[t] for t in texts]


def _read_labels_cache(path: Path) -> dict[str, str]:
    """A ``--labels-cache`` file: a JSON object ``{instruction: "verb|noun"}``, else ConfigError saying what it holds."""
    from pie_retriever.errors import ConfigError

    fix = "pass another --labels-cache file (it is written as {instruction: label}) or delete this one."
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        msg = f"--labels-cache {path}: not a JSON file ({exc}); {fix}"
        raise ConfigError(msg) from None
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        what = type(known).__name__ if not isinstance(known, dict) else "an object with non-string labels"
        msg = f"--labels-cache {path}: holds a JSON {what}, not an object {{instruction: \"verb|noun\"}}; {fix}"
        raise ConfigError(msg)
    return known
