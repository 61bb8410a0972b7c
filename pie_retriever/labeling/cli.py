"""Command lines of the labeler.

``pie-retriever label POOL [-o OUT] [--field FIELD]``: ``verb|noun`` task labels for the instructions of a pool
(:func:`add_arguments` / :func:`run`, dispatched by :mod:`pie_retriever.cli`).

``python -m pie_retriever.labeling label POOL [-o OUT]`` (the same) and
``python -m pie_retriever.labeling agreement IEB_FILE [IEB_FILE ...] [--limit N]`` (:func:`module_main`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .._util import atomic_write_text
from .api import label_agreement, label_instructions
from .rules import normalize_space

__all__ = ["add_arguments", "main", "module_main", "run"]


def main(pool_path: str, output: str | None = None, field: str = "instruction") -> int:
    """Label every demonstration of a pool file and write JSONL with ``metadata.task`` set to the label.

    ``pool_path`` is any pool file :func:`pie_retriever.pools.load_pool` reads (JSONL, a JSON list of objects or
    strings, IEB's ``{label: {"samples": [...]}}``). ``field`` is ``instruction``, ``input``, ``output`` or a
    metadata key. A ``metadata.task`` that differs from the new label is kept as ``metadata.gold_task``.
    With ``output=None`` it prints ``label<TAB>instruction`` lines. Returns 0, or 2 on a bad input file.
    """
    from ..pools import load_pool

    path = Path(pool_path)
    try:
        demos = load_pool(path)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    texts = []
    for i, d in enumerate(demos):
        v = getattr(d, field) if field in ("instruction", "input", "output") else d.metadata.get(field)
        if not isinstance(v, str) or not v.strip():
            print(f"error: {path}: record {i} has no string field {field!r}", file=sys.stderr)
            return 2
        texts.append(v)
    labels = label_instructions(texts)
    if output is None:
        for lab, t in zip(labels, texts):
            print(f"{lab}\t{normalize_space(t)}")
        return 0
    lines = []
    for d, lab in zip(demos, labels):
        rec = d.to_dict()
        meta = rec["metadata"]
        if "task" in meta and meta["task"] != lab:
            meta.setdefault("gold_task", meta["task"])
        meta["task"] = lab
        lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
    out = atomic_write_text(output, "".join(lines))
    print(f"labelled {len(demos)} instructions -> {out}", file=sys.stderr)
    return 0


# -- `pie-retriever label` -----------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list or IEB JSON)")
    p.add_argument("-o", "--output", default=None, help="write JSONL with metadata.task added (default: print label<TAB>instruction)")
    p.add_argument("--field", default="instruction", help="field holding the instruction (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    return main(args.pool, args.output, field=args.field)


# -- `python -m pie_retriever.labeling` ----------------------------------------------------------------
def _print_agreement(paths: Sequence[str], limit: int | None) -> int:
    for path in paths:
        res = label_agreement(path, limit=limit, show_progress=False)
        print(
            f"{Path(path).name}: n={res['n']} agreement={res['agreement']:.4f} "
            f"label-level={res['label_agreement']:.4f} ({res['n_labels']} labels) "
            f"verb={res['verb_agreement']:.4f} noun={res['noun_agreement']:.4f} "
            f"{res['per_second']:.0f} instr/s"
        )
    return 0


def module_main(argv: Sequence[str] | None = None) -> int:
    """``python -m pie_retriever.labeling label POOL [-o OUT]`` or ``... agreement IEB_FILE [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pie_retriever.labeling", description="IEB-style verb|noun task labels for instructions."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_label = sub.add_parser("label", help="label a pool file (JSONL, JSON list or IEB shape)")
    p_label.add_argument("pool")
    p_label.add_argument("-o", "--output", default=None, help="JSONL to write (default: print label<TAB>text)")
    p_label.add_argument("--field", default="instruction")
    p_agree = sub.add_parser("agreement", help="exact agreement with the gold labels of IEB files")
    p_agree.add_argument("paths", nargs="+")
    p_agree.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "label":
        return main(args.pool, args.output, field=args.field)
    return _print_agreement(args.paths, args.limit)
