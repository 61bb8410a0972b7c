"""Long-context training data: instructions joined to their own context and to topic-swapped passages.

A pool often holds *prompts*, not bare instructions: a template wrapped around a passage, where the passage's
topic can drown the task. This builder adds, to a labelled set of instructions (:func:`build_training_set`):

1. **own contexts**: every ``ift_test`` sample whose ``input`` carries context after the instruction (IEB's
   ``input`` is the instruction followed by its context), as written there, with its gold label;
2. **topic-swapped pairs**: for a share ``contexts`` of the instructions, the instruction joined to a random
   passage (a window of 10–60 words) with one of :data:`JOINS` (instruction first or passage first), and a
   *twin*: an instruction of a confusable other label (shares the verb or the noun, else any other label)
   joined to the **same** passage. :class:`ContextTripletSampler` uses the twin as the hard negative half of
   the time, so the loss sees two prompts with one passage and two tasks and must tell them apart.

Passages come from ``ift_test`` only (its outputs of at least 15 words and its contexts of at least 8 words);
samples whose instruction is held out (``eft_test``, ``intention_similarity_test``) give no passage. Nothing
from any prompt-template collection is used: the joins below were written for this project.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from pie_retriever.errors import TrainingDataError
from pie_retriever.pool.ieb import IFT_TEST, held_out_instructions, iter_samples, read_json
from pie_retriever.training.data import LabelledSet, TripletSampler, normalize_text

__all__ = ["JOINS", "ContextTripletSampler", "ift_contexts", "provenance", "with_contexts"]

#: How an instruction and a passage are joined (``{i}`` instruction, ``{p}`` passage); written for this project.
JOINS: tuple[str, ...] = (
    "{i}\n\n{p}",
    "{i}\nInput: {p}",
    "Task: {i}\n\nInput: {p}",
    "{i}\n\nText: \"{p}\"",
    "{i} {p}",
    "{p}\n\n{i}",
    "Text: {p}\n\n{i}",
    "\"{p}\"\n\n{i}",
    "Passage:\n{p}\n\nInstruction: {i}",
    "{p}\n\nQuestion: {i}\nAnswer:",
)
MIN_OUTPUT_WORDS = 15
MIN_CONTEXT_WORDS = 8
PASSAGE_WORDS = (10, 60)
INSTRUCTION_WORDS = 64


def _context_of(sample: dict) -> str:
    """The context after the instruction in an IEB sample's ``input`` ("" when there is none)."""
    text, instruction = str(sample.get("input") or ""), str(sample.get("instruction") or "")
    if text.startswith("Task: ") and not instruction.startswith("Task: "):
        text = text[len("Task: "):]
    return text[len(instruction):].strip() if text.startswith(instruction) else ""


def ift_contexts(data_dir: str | Path) -> tuple[list[tuple[str, str]], list[str]]:
    """From ``ift_test``: ``(input, label)`` of samples with context, and the passages (deduplicated).

    Samples whose instruction is held out are skipped entirely.
    """
    path = Path(data_dir) / IFT_TEST
    held = {normalize_text(t) for t in held_out_instructions(data_dir)}
    own: list[tuple[str, str]] = []
    passages: dict[str, str] = {}
    for s in iter_samples(read_json(path), path):
        sample = s.sample if isinstance(s.sample, dict) else {}
        instruction = str(sample.get("instruction") or "")
        if not instruction or normalize_text(instruction) in held:
            continue
        context = _context_of(sample)
        if len(context.split()) >= MIN_CONTEXT_WORDS:
            own.append((str(sample["input"]).strip(), s.label))
            passages.setdefault(normalize_text(context), context)
        output = str(sample.get("output") or "").strip()
        if len(output.split()) >= MIN_OUTPUT_WORDS:
            passages.setdefault(normalize_text(output), output)
    return own, list(passages.values())


def _window(passage: str, rng: random.Random) -> str:
    words = passage.split()
    n = rng.randint(*PASSAGE_WORDS)
    if len(words) <= n:
        return " ".join(words)
    start = rng.randrange(0, len(words) - n + 1) if rng.random() < 0.3 else 0
    return " ".join(words[start:start + n])


def _cut(text: str, n: int = INSTRUCTION_WORDS) -> str:
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n])


def _twin_index(i: int, labels: Sequence[str], sampler: TripletSampler, rng: random.Random) -> int:
    """An instruction of a confusable other label (the sampler's hard-negative labels), else of any other label."""
    lab = labels[i]
    cands = sampler.hard.get(lab) or sampler.all_labels
    other = lab
    while other == lab:
        other = cands[rng.randrange(len(cands))]
    members = sampler.members[other]
    return members[rng.randrange(len(members))]


def _add_pairs(data: LabelledSet, out: LabelledSet, passages: list[str], share: float, seed: int,
               twins: dict[int, int]) -> int:
    """Append topic-swapped pairs (instruction + passage, twin + same passage) to ``out``; returns pairs added."""
    rng = random.Random(f"contexts-{seed}")
    base = TripletSampler(data.labels, seed=seed)
    n = len(data)
    chosen = [i for i in range(n) if rng.random() < share]
    for i in chosen:
        j = _twin_index(i, data.labels, base, rng)
        passage = _window(passages[rng.randrange(len(passages))], rng)
        for row, join in ((i, rng.choice(JOINS)), (j, rng.choice(JOINS))):
            out.extend([join.format(i=_cut(data.texts[row]), p=passage)], [data.labels[row]], f"{data.sources[row]}+swapped")
        a, b = len(out) - 2, len(out) - 1
        twins[a], twins[b] = b, a
    return len(chosen)


def with_contexts(args: Any, data: LabelledSet, report: dict[str, Any]) -> tuple[LabelledSet, dict[str, Any], ContextTripletSampler]:
    """The set with own contexts and topic-swapped pairs added, its report, and the sampler that uses the twins.

    ``args`` is a :class:`~pie_retriever.training.args.TrainingArguments` (``data_dir``, ``contexts`` = share
    of instructions that get a pair, ``seed`` and the sampler options).
    """
    if not args.data_dir:
        msg = (f"contexts={args.contexts} needs data_dir (the IEB folder: passages come from ift_test); "
               "set data_dir or contexts=0.")
        raise TrainingDataError(msg)
    own, passages = ift_contexts(args.data_dir)
    out = LabelledSet([_cut(t) for t in data.texts], list(data.labels), list(data.sources))
    known = set(data.labels)
    own_kept = [(t, lab) for t, lab in own if lab in known]  # a label dropped upstream stays dropped
    for text, lab in own_kept:
        out.extend([text], [lab], "ift_test+own_context")
    twins: dict[int, int] = {}
    pairs = _add_pairs(data, out, passages, args.contexts, args.seed, twins)
    sampler = ContextTripletSampler(out.labels, twins, seed=args.seed, hard_negatives=args.hard_negatives,
                                    min_label_count=args.min_label_count, max_anchors_per_label=args.max_anchors_per_label)
    report = {**report, **out.stats(), "provenance": provenance(args.data_dir), "contexts": {
        "own_context_rows": len(own_kept), "passages": len(passages), "swapped_pairs": pairs,
        "swapped_rows": 2 * pairs, "share": args.contexts, "joins": len(JOINS), "passage_words": list(PASSAGE_WORDS),
        "passage_source": "ift_test outputs (>= 15 words) and contexts (>= 8 words); held-out instructions' samples skipped",
    }}
    return out, report, sampler


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def provenance(data_dir: str | Path) -> list[dict[str, str]]:
    """Where every training text of the long-context recipe comes from (written into the artifact card)."""
    from pie_retriever.pool.ieb import EFT_TEST, EFT_TRAIN_UNSUP, IIS_TEST

    d = Path(data_dir)
    return [
        {"set": "ift_test", "file": f"IEB {IFT_TEST} (sha256 {_sha256(d / IFT_TEST)[:16]})",
         "use": "instructions with their gold labels; their inputs (instruction + context) as own-context rows; "
                "their outputs (>= 15 words) and contexts (>= 8 words) as the passages of the topic-swapped pairs"},
        {"set": "eft_train_unsup", "file": f"IEB {EFT_TRAIN_UNSUP} (sha256 {_sha256(d / EFT_TRAIN_UNSUP)[:16]})",
         "use": "instructions with silver verb|noun labels from pie_retriever.labeling (mapped onto gold ## labels)"},
        {"set": "held out", "file": f"IEB {EFT_TEST}, {IIS_TEST}",
         "use": "read only to drop every one of their instructions (and the ift_test samples that repeat them, passages included)"},
        {"set": "joins", "file": "pie_retriever/training/context_data.py JOINS",
         "use": f"{len(JOINS)} instruction/passage joins written for this project; no prompt-template collection"},
    ]


class ContextTripletSampler(TripletSampler):
    """A :class:`TripletSampler` whose anchors with a twin (same passage, other label) take it as the hard
    negative half of the time (seeded)."""

    def __init__(self, labels: Sequence[str], twins: dict[int, int], **kwargs: Any) -> None:
        super().__init__(labels, **kwargs)
        self.twins = dict(twins)

    def epoch(self, epoch: int = 0) -> list[tuple[int, int, int]]:
        rng = random.Random(f"{self.seed}-twins-{epoch}")
        out = []
        for a, p, n in super().epoch(epoch):
            if a in self.twins and rng.random() < 0.5:
                n = self.twins[a]
            out.append((a, p, n))
        return out
