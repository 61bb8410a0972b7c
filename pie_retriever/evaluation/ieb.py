"""IEB (Instruction Embedding Benchmark) loaders and the paper's evaluation protocols.

Files (see ``../shared/ieb/README.md``): ``eft_test.json`` / ``ift_test.json`` are
``{label: {"number": n, "samples": [{"category", "instruction", "input", "output"}]}}``;
``intention_similarity_test.json`` is a list of ``{"instruction1", "intention1", "instruction2",
"intention2", "label"}``; ``eft_train_unsup.json`` is a list of strings.

Protocols (:func:`evaluate`):

* **task retrieval** — leave-one-out over every eft_test sample (one row per sample, 3,291): P@1, P@4,
  MRR@10 and nDCG@10 of the same-label neighbours;
* **ICT** — KMeans (``n_clusters`` = number of gold labels, ``random_state=0``, ``n_init="auto"``) on
  the embeddings of every eft_test sample: ARI, purity, homogeneity;
* **IIS** — cosine similarity of each pair of the intention-similarity file, Spearman with the 0/1 label.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import PoolFormatError

__all__ = [
    "EFT_TEST",
    "EFT_TRAIN_UNSUP",
    "IFT_TEST",
    "IIS_TEST",
    "IISPairs",
    "evaluate",
    "held_out_instructions",
    "load_iis",
    "load_labelled",
    "load_unlabelled",
]

EFT_TEST = "eft_test.json"
IFT_TEST = "ift_test.json"
IIS_TEST = "intention_similarity_test.json"
EFT_TRAIN_UNSUP = "eft_train_unsup.json"


def _read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc})."
        raise PoolFormatError(msg) from exc


def load_labelled(path: str | Path) -> tuple[list[str], list[str]]:
    """``(instructions, labels)`` from an IEB ``{label: {"samples": [...]}}`` file, one row per sample.

    Rows follow the file's label order, then sample order; duplicated instructions are kept (the
    paper's protocols count every sample).
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        msg = f"{path}: expected an IEB object {{label: {{'samples': [...]}}}}, got {type(data).__name__}."
        raise PoolFormatError(msg)
    instructions: list[str] = []
    labels: list[str] = []
    for label, entry in data.items():
        samples = entry.get("samples") if isinstance(entry, dict) else None
        if not isinstance(samples, list):
            msg = f"{path}: label {label!r} has no 'samples' list."
            raise PoolFormatError(msg)
        for s in samples:
            text = s.get("instruction") if isinstance(s, dict) else None
            if not isinstance(text, str):
                msg = f"{path}: a sample of label {label!r} has no string 'instruction'."
                raise PoolFormatError(msg)
            instructions.append(text)
            labels.append(label)
    return instructions, labels


@dataclass(frozen=True)
class IISPairs:
    """Intention-similarity pairs: ``first[i]`` vs ``second[i]`` with 0/1 ``labels[i]``."""

    first: list[str]
    second: list[str]
    labels: np.ndarray
    intentions1: list[str]
    intentions2: list[str]

    def __len__(self) -> int:
        return len(self.first)

    def __iter__(self):  # so `first, second, labels = load_iis(path)` works
        return iter((self.first, self.second, self.labels))


def load_iis(path: str | Path) -> IISPairs:
    """Pairs of ``intention_similarity_test.json``; unpacks as ``first, second, labels``."""
    data = _read_json(path)
    if not isinstance(data, list):
        msg = f"{path}: expected a list of pairs, got {type(data).__name__}."
        raise PoolFormatError(msg)
    try:
        return IISPairs(
            first=[str(d["instruction1"]) for d in data],
            second=[str(d["instruction2"]) for d in data],
            labels=np.asarray([int(d["label"]) for d in data], dtype=np.int64),
            intentions1=[str(d.get("intention1", "")) for d in data],
            intentions2=[str(d.get("intention2", "")) for d in data],
        )
    except (KeyError, TypeError) as exc:
        msg = f"{path}: every pair needs 'instruction1', 'instruction2' and 'label' ({exc!r})."
        raise PoolFormatError(msg) from exc


def load_unlabelled(path: str | Path) -> list[str]:
    """The strings of ``eft_train_unsup.json`` (a JSON list of instructions)."""
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        msg = f"{path}: expected a JSON list of instruction strings."
        raise PoolFormatError(msg)
    return list(data)


def held_out_instructions(data_dir: str | Path) -> set[str]:
    """Every instruction of eft_test and intention_similarity_test (never to be trained on), stripped."""
    data_dir = Path(data_dir)
    out: set[str] = set()
    eft = data_dir / EFT_TEST
    if eft.is_file():
        out.update(t.strip() for t in load_labelled(eft)[0])
    iis = data_dir / IIS_TEST
    if iis.is_file():
        pairs = load_iis(iis)
        out.update(t.strip() for t in pairs.first)
        out.update(t.strip() for t in pairs.second)
    return out
