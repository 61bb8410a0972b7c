"""Training data: labelled instructions, held-out filtering, deduplication and a seeded triplet sampler.

A training example is a triplet ``(anchor, positive, hard_negative)`` of indices into a
:class:`LabelledSet`: the positive is another instruction with the anchor's label; the hard negative is
an instruction whose ``verb|noun`` pair shares the verb or the noun with one of the anchor's pairs but
has another label (IEB's ``##`` labels hold several synonym pairs). When no such label exists the
negative is a random instruction of another label.

Every instruction of ``eft_test.json`` and ``intention_similarity_test.json`` is dropped, always.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from pie_retriever import labeling
from pie_retriever._util import atomic_write_text
from pie_retriever.errors import TrainingDataError
from pie_retriever.labeling import FALLBACK_LABEL, NONE, parse_label
from pie_retriever.pool.ieb import EFT_TEST, EFT_TRAIN_UNSUP, IFT_TEST, IIS_TEST, held_out_instructions, load_labelled, load_unlabelled

logger = logging.getLogger(__name__)

__all__ = ["LabelledSet", "TrainingDataError", "TripletSampler", "build_training_set", "labelled_set_from_pool", "normalize_text",
           "silver_labels", "split_by_label", "SPLIT_MODES"]


def normalize_text(text: str) -> str:
    """Key used for deduplication and held-out filtering: casefolded, whitespace collapsed, stripped."""
    return re.sub(r"\s+", " ", text).strip().casefold()


#: ``"decide|statement##determine|statement"`` → ``[("decide", "statement"), ("determine", "statement")]``
#: (the labeler's :func:`~pie_retriever.labeling.parse_label`, under its old name).
label_pairs = parse_label


@dataclass
class LabelledSet:
    """Parallel lists of instructions, labels and their source names."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (len(self.texts) == len(self.labels) == len(self.sources)):
            msg = f"texts, labels and sources must have equal lengths, got {len(self.texts)}, {len(self.labels)}, {len(self.sources)}."
            raise TrainingDataError(msg)

    def __len__(self) -> int:
        return len(self.texts)

    def extend(self, texts: Sequence[str], labels: Sequence[str], source: str) -> None:
        self.texts.extend(texts)
        self.labels.extend(labels)
        self.sources.extend([source] * len(texts))

    def stats(self) -> dict[str, object]:
        counts: dict[str, int] = defaultdict(int)
        for lab in self.labels:
            counts[lab] += 1
        by_source: dict[str, int] = defaultdict(int)
        for s in self.sources:
            by_source[s] += 1
        return {
            "instructions": len(self), "labels": len(counts),
            "labels_with_positives": sum(c >= 2 for c in counts.values()),
            "instructions_with_positives": sum(c for c in counts.values() if c >= 2),
            "by_source": dict(by_source),
        }


def filter_and_dedupe(data: LabelledSet, held_out: set[str]) -> tuple[LabelledSet, dict[str, int]]:
    """Drop held-out instructions (by normalised text), fallback labels and duplicates (first one wins)."""
    held = {normalize_text(t) for t in held_out}
    seen: set[str] = set()
    out = LabelledSet()
    dropped = {"held_out": 0, "duplicate": 0, "unlabelled": 0, "empty": 0}
    for text, label, source in zip(data.texts, data.labels, data.sources):
        key = normalize_text(text)
        if not key:
            dropped["empty"] += 1
        elif key in held:
            dropped["held_out"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        elif not label or label == FALLBACK_LABEL:
            dropped["unlabelled"] += 1
        else:
            seen.add(key)
            out.extend([text], [label], source)
    return out, dropped


def canonicalize_labels(labels: Sequence[str], reference: Sequence[str]) -> list[str]:
    """Map a plain ``verb|noun`` label onto the ``##`` label of ``reference`` that contains its pair."""
    pair_to_label: dict[tuple[str, str], str] = {}
    for lab in reference:
        if "##" in lab:
            for pair in label_pairs(lab):
                pair_to_label.setdefault(pair, lab)
    out = []
    for lab in labels:
        pairs = label_pairs(lab)
        out.append(pair_to_label.get(pairs[0], lab) if len(pairs) == 1 else lab)
    return out


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pie_retriever" / "labels"


def silver_labels(texts: Sequence[str], *, cache_dir: str | Path | None = None, show_progress: bool | None = None) -> list[str]:
    """Labels from :func:`pie_retriever.labeling.label_instructions`, cached by a hash of texts + labeler source."""
    h = hashlib.sha256()
    for module in (labeling.rules, labeling.api):  # the rule set and the pipeline loading decide the labels
        h.update(Path(module.__file__).read_bytes())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    cache = Path(cache_dir) if cache_dir else _default_cache_dir()
    path = cache / f"silver-{h.hexdigest()[:16]}.json"
    if path.is_file():
        labels = json.loads(path.read_text())
        if isinstance(labels, list) and len(labels) == len(texts):
            logger.info("silver labels from cache %s", path)
            return labels
    labels = labeling.label_instructions(list(texts), batch_size=256, show_progress=show_progress)
    try:
        atomic_write_text(path, json.dumps(labels))
    except OSError as exc:  # a read-only home must not break training
        logger.warning("could not cache silver labels at %s: %s", path, exc)
    return labels


def build_training_set(
    data_dir: str | Path,
    sources: Sequence[str] = ("ift_test", "eft_train_unsup"),
    *,
    label_cache: str | Path | None = None,
    show_progress: bool | None = None,
) -> tuple[LabelledSet, dict[str, object]]:
    """Load, label, filter and deduplicate the training instructions. Returns the set and a report.

    Gold sources come first so a gold label wins over a silver one for the same instruction.
    """
    data_dir = Path(data_dir)
    for needed in (EFT_TEST, IIS_TEST):
        if not (data_dir / needed).is_file():
            msg = (f"{data_dir / needed} is missing: it is needed to keep every evaluation instruction out of the "
                   "training set. Point data_dir at the IEB folder (e.g. ../shared/ieb).")
            raise TrainingDataError(msg)
    raw = LabelledSet()
    gold_labels: list[str] = []
    order = sorted(sources, key=lambda s: s != "ift_test")
    for source in order:
        if source == "ift_test":
            texts, labels = load_labelled(data_dir / IFT_TEST)
            gold_labels = labels
            raw.extend(texts, labels, source)
        elif source == "eft_train_unsup":
            texts = load_unlabelled(data_dir / EFT_TRAIN_UNSUP)
            labels = silver_labels(texts, cache_dir=label_cache, show_progress=show_progress)
            if gold_labels:
                labels = canonicalize_labels(labels, gold_labels)
            raw.extend(texts, labels, source)
        else:  # pragma: no cover - validated by TrainingArguments
            msg = f"Unknown source {source!r}."
            raise TrainingDataError(msg)
    data, dropped = filter_and_dedupe(raw, held_out_instructions(data_dir))
    report = {"raw": len(raw), "dropped": dropped, **data.stats()}
    return data, report


class TripletSampler:
    """Seeded ``(anchor, positive, hard_negative)`` triplets, reshuffled every epoch.

    Anchors: every instruction of a label with at least ``min_label_count`` members, at most
    ``max_anchors_per_label`` per label and epoch (frequent silver labels would otherwise dominate).
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        seed: int = 0,
        hard_negatives: bool = True,
        min_label_count: int = 2,
        max_anchors_per_label: int | None = None,
    ) -> None:
        self.labels = list(labels)
        self.seed = seed
        self.hard_negatives = hard_negatives
        self.max_anchors_per_label = max_anchors_per_label
        self.members: dict[str, list[int]] = defaultdict(list)
        for i, lab in enumerate(self.labels):
            self.members[lab].append(i)
        self.anchor_labels = sorted(lab for lab, m in self.members.items() if len(m) >= max(2, min_label_count))
        if not self.anchor_labels:
            msg = (f"No label has {max(2, min_label_count)} or more instructions, so there are no positive pairs; "
                   "add data or lower min_label_count.")
            raise TrainingDataError(msg)
        self.all_labels = sorted(self.members)
        by_verb: dict[str, set[str]] = defaultdict(set)
        by_noun: dict[str, set[str]] = defaultdict(set)
        for lab in self.all_labels:
            for verb, noun in label_pairs(lab):
                if verb and verb != NONE:
                    by_verb[verb].add(lab)
                if noun and noun != NONE:
                    by_noun[noun].add(lab)
        self.hard: dict[str, list[str]] = {}
        for lab in self.anchor_labels:
            cands: set[str] = set()
            for verb, noun in label_pairs(lab):
                cands |= by_verb.get(verb, set()) | by_noun.get(noun, set())
            cands.discard(lab)
            self.hard[lab] = sorted(cands)

    def epoch(self, epoch: int = 0) -> list[tuple[int, int, int]]:
        rng = random.Random(f"{self.seed}-{epoch}")
        triplets = []
        for lab in self.anchor_labels:
            members = self.members[lab]
            anchors = list(members)
            rng.shuffle(anchors)
            if self.max_anchors_per_label is not None:
                anchors = anchors[: self.max_anchors_per_label]
            for a in anchors:
                p = a
                while p == a:
                    p = members[rng.randrange(len(members))]
                triplets.append((a, p, self._negative(lab, rng)))
        rng.shuffle(triplets)
        return triplets

    def _negative(self, label: str, rng: random.Random) -> int:
        cands = self.hard.get(label) if self.hard_negatives else None
        if cands:
            other = cands[rng.randrange(len(cands))]
        else:
            other = label
            while other == label:
                other = self.all_labels[rng.randrange(len(self.all_labels))]
        members = self.members[other]
        return members[rng.randrange(len(members))]

    def batches(self, batch_size: int, epoch: int = 0) -> Iterator[list[tuple[int, int, int]]]:
        """Batches of one epoch; the last, smaller batch is dropped when it has fewer than 2 triplets."""
        triplets = self.epoch(epoch)
        for start in range(0, len(triplets), batch_size):
            batch = triplets[start:start + batch_size]
            if len(batch) >= 2:
                yield batch

    def steps_per_epoch(self, batch_size: int) -> int:
        n = sum(min(len(self.members[lab]), self.max_anchors_per_label or len(self.members[lab])) for lab in self.anchor_labels)
        full, rest = divmod(n, batch_size)
        return full + (1 if rest >= 2 else 0)


# -- the user's own pool -------------------------------------------------------------------------------
def labelled_set_from_pool(
    demos: Sequence[Any],
    *,
    label_field: str = "task",
    auto_label: bool = False,
    show_progress: bool | None = None,
) -> tuple[LabelledSet, dict[str, object]]:
    """A deduplicated :class:`LabelledSet` of a pool's instructions and their ``metadata[label_field]`` labels.

    ``demos`` are :class:`~pie_retriever.Demonstration` objects (``load_pool`` keeps a top-level ``task`` key in
    ``metadata``). Demonstrations without a label are dropped, or labelled by :mod:`pie_retriever.labeling`
    when ``auto_label`` (existing labels are never replaced). Sources: ``pool`` (the user's labels) and
    ``auto`` (the labeler's). Returns the set and a report (counts, dropped, auto-labelled).
    """
    labels = [d.metadata.get(label_field) for d in demos]
    sources = ["pool" if _is_label(lab) else "auto" for lab in labels]
    n_missing = sources.count("auto")
    if auto_label and n_missing:
        demos, _ = labeling.label_demonstrations(demos, label_key=label_field, show_progress=show_progress)
        labels = [d.metadata.get(label_field) for d in demos]
    if not any(_is_label(lab) for lab in labels):
        msg = (f"No demonstration has a label in metadata[{label_field!r}] ({len(demos)} read); name the field that holds "
               "the task with --label-field, or pass --auto-label to label the pool with pie_retriever.labeling.")
        raise TrainingDataError(msg)
    raw = LabelledSet()
    for d, lab, src in zip(demos, labels, sources):
        raw.extend([d.instruction], [str(lab).strip() if _is_label(lab) else ""], src)
    data, dropped = filter_and_dedupe(raw, set())
    report = {"raw": len(raw), "label_field": label_field, "missing_labels": n_missing,
              "auto_labelled": n_missing if auto_label else 0, "dropped": dropped, **data.stats()}
    return data, report


def _is_label(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and bool(str(value).strip())


#: How :func:`split_by_label` holds out: instructions of every label, or whole labels (unseen tasks).
SPLIT_MODES: dict[str, str] = {
    "instance": "hold out a share of every label's instructions; they query the rest (labels seen in training)",
    "label": "hold out a share of the labels (with 2+ instructions); their instructions query each other, leave-one-out (unseen tasks)",
}


def split_by_label(data: LabelledSet, eval_split: float, *, seed: int = 0, by: str = "instance",
                   ) -> tuple[LabelledSet, LabelledSet, dict[str, object]]:
    """Split ``data`` into a training part and held-out queries, seeded. Returns ``(train, held_out, report)``.

    ``by="instance"``: hold out ``eval_split`` of every label's instructions, keeping at least 2 of each label for
    training (labels with fewer than 3 stay whole); the held-out instructions query the training part, the way
    new queries meet a pool. ``by="label"``: hold out ``eval_split`` of the labels that have 2+ instructions, whole;
    their instructions are evaluated leave-one-out among themselves (tasks the model never saw), which works when
    most labels are small (IEB's ift_test has none with 3+).
    """
    from pie_retriever._util import check_choice

    if isinstance(eval_split, bool) or not isinstance(eval_split, (int, float)) or not 0.0 <= eval_split < 1.0:
        msg = f"eval_split must be a share in [0, 1), got {eval_split!r}."
        raise TrainingDataError(msg)
    check_choice("split mode", by, SPLIT_MODES)
    members: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(data.labels):
        members[lab].append(i)
    rng = random.Random(f"split-{seed}")
    held: set[int] = set()
    if by == "label":
        candidates = sorted(lab for lab, idx in members.items() if len(idx) >= 2)
        rng.shuffle(candidates)
        for lab in candidates[: int(round(len(candidates) * eval_split))]:
            held.update(members[lab])
    else:
        for lab in sorted(members):
            idx = list(members[lab])
            n_eval = min(int(round(len(idx) * eval_split)), len(idx) - 2)
            if n_eval > 0:
                rng.shuffle(idx)
                held.update(idx[:n_eval])
    train, evals = LabelledSet(), LabelledSet()
    for i, (t, lab, src) in enumerate(zip(data.texts, data.labels, data.sources)):
        (evals if i in held else train).extend([t], [lab], src)
    if eval_split > 0 and not evals:
        need = "2 or more instructions" if by == "label" else "3 or more instructions and round(n * eval_split) >= 1"
        msg = (f"eval_split={eval_split} holds out nothing from {len(data)} instructions / {len(members)} labels: a label "
               f"needs {need}. Add data, raise eval_split, "
               + ("pass --split-by label (hold out whole labels), " if by == "instance" else "")
               + "or pass --eval-split 0 (no evaluation) or --eval-queries FILE.")
        raise TrainingDataError(msg)
    report = {"eval_split": eval_split, "split_by": by, "train_instructions": len(train), "eval_instructions": len(evals),
              "eval_labels": len(set(evals.labels))}
    return train, evals, report
