"""Name clusters by the labeler's majority ``verb|noun`` among their instructions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ClusterName", "name_clusters"]

_FALLBACK = "none|none"  # the labeler's label when it finds no verb (labeling.rules.FALLBACK_LABEL)


@dataclass(frozen=True)
class ClusterName:
    """``name`` (unique across clusters: a repeated label gets `` #2``, `` #3``), ``label`` (the majority
    ``verb|noun``), ``purity`` (share of the cluster's instructions labelled exactly ``label``) and
    ``verb_share`` (share whose verb is the label's verb)."""

    cluster: int
    name: str
    label: str
    purity: float
    verb_share: float
    size: int


def _majority(labels: list[str]) -> tuple[str, float, float]:
    """The majority verb, then the majority noun among that verb's labels (a real noun over ``none`` when there
    is one): ``(label, purity, verb share)``. The labeler's fallback ``none|none`` wins only when nothing else is there."""
    pairs = [lab.partition("|")[::2] for lab in labels if lab != _FALLBACK]
    if not pairs:
        return _FALLBACK, 1.0, 1.0
    verbs = Counter(v for v, _ in pairs)
    verb = min(verbs, key=lambda v: (-verbs[v], v))
    nouns = Counter(n for v, n in pairs if v == verb)
    noun = min(nouns, key=lambda n: (n in ("", "none"), -nouns[n], n))
    label = f"{verb}|{noun}"
    return label, sum(lab == label for lab in labels) / len(labels), verbs[verb] / len(labels)


def name_clusters(labels: Sequence[str], assign: Sequence[int] | np.ndarray) -> dict[int, ClusterName]:
    """``{cluster: ClusterName}`` from one ``verb|noun`` label per row and the rows' cluster ids.

    A cluster is named by its majority verb and, among the rows with that verb, their majority noun (more
    robust than the single most frequent label when a task is phrased with many nouns: *write a poem /
    haiku / limerick*). Repeated names are numbered by cluster size, so the biggest keeps the bare name.
    """
    assign = np.asarray(assign, dtype=np.int64)
    members: dict[int, list[str]] = {}
    for lab, c in zip(labels, assign):
        members.setdefault(int(c), []).append(str(lab))
    picked = {c: (*_majority(labs), len(labs)) for c, labs in members.items()}
    seen: Counter[str] = Counter()
    out = {}
    for c in sorted(picked, key=lambda c: (-picked[c][3], c)):
        label, purity, verb_share, size = picked[c]
        seen[label] += 1
        name = label if seen[label] == 1 else f"{label} #{seen[label]}"
        out[c] = ClusterName(c, name, label, purity, verb_share, size)
    return out
