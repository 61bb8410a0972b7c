"""The one reader of IEB (Instruction Embedding Benchmark) files.

Files (see the IEB README shipped next to them): ``eft_test.json`` / ``ift_test.json`` are
``{label: {"number": n, "samples": [{"category", "instruction", "input", "output"}]}}``;
``intention_similarity_test.json`` is a list of ``{"instruction1", "intention1", "instruction2",
"intention2", "label"}``; ``eft_train_unsup.json`` is a list of strings.

Pools (:func:`pie_retriever.pool.pools.load_pool`), the labeler, training and evaluation all read IEB through
this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pie_retriever.errors import PoolFormatError

__all__ = [
    "EFT_TEST",
    "EFT_TRAIN_UNSUP",
    "IFT_TEST",
    "IIS_TEST",
    "IEBSample",
    "IISPairs",
    "held_out_instructions",
    "iter_samples",
    "load_iis",
    "load_labelled",
    "load_unlabelled",
    "read_json",
]

EFT_TEST = "eft_test.json"
IFT_TEST = "ift_test.json"
IIS_TEST = "intention_similarity_test.json"
EFT_TRAIN_UNSUP = "eft_train_unsup.json"


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a malformed one raises PoolFormatError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc})."
        raise PoolFormatError(msg) from exc


@dataclass(frozen=True)
class IEBSample:
    """One sample of a labelled IEB file: its gold ``label`` and the raw sample dict."""

    label: str
    index: int
    sample: Any

    @property
    def instruction(self) -> Any:
        return self.sample.get("instruction") if isinstance(self.sample, dict) else None


def iter_samples(data: Any, path: str | Path) -> Iterator[IEBSample]:
    """Walk an IEB ``{label: {"samples": [...]}}`` object (already parsed), checking its shape."""
    if not isinstance(data, dict):
        msg = f"{path}: expected an IEB object {{label: {{'samples': [...]}}}}, got {type(data).__name__}."
        raise PoolFormatError(msg)
    for label, entry in data.items():
        samples = entry.get("samples") if isinstance(entry, dict) else None
        if not isinstance(samples, list):
            msg = f"{path}: label {label!r} has no 'samples' list; not the IEB {{label: {{samples: [...]}}}} shape."
            raise PoolFormatError(msg)
        for i, s in enumerate(samples):
            yield IEBSample(label, i, s)


def load_labelled(path: str | Path) -> tuple[list[str], list[str]]:
    """``(instructions, labels)`` from an IEB ``{label: {"samples": [...]}}`` file, one row per sample.

    Rows follow the file's label order, then sample order; duplicated instructions are kept (the
    paper's protocols count every sample).
    """
    instructions: list[str] = []
    labels: list[str] = []
    for s in iter_samples(read_json(path), path):
        if not isinstance(s.instruction, str):
            msg = f"{path}: a sample of label {s.label!r} has no string 'instruction'."
            raise PoolFormatError(msg)
        instructions.append(s.instruction)
        labels.append(s.label)
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
    data = read_json(path)
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


def is_iis(data: Any) -> bool:
    """Whether parsed JSON has the intention-similarity shape (a list of pair dicts)."""
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "intention1" in data[0]


def load_unlabelled(path: str | Path) -> list[str]:
    """The strings of ``eft_train_unsup.json`` (a JSON list of instructions)."""
    data = read_json(path)
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
