"""Command lines of the labeler.

``pie-retriever label POOL [-o OUT] [--field FIELD] [--overwrite]``: ``verb|noun`` task labels for the instructions of a pool
that have none (existing labels are kept unless ``--overwrite``)
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

from pie_retriever._util import atomic_write_text
from pie_retriever.labeling.api import label_agreement
from pie_retriever.labeling.rules import normalize_space

__all__ = ["add_arguments", "main", "module_main", "run"]


def main(pool_path: str, output: str | None = None, field: str = "instruction", overwrite: bool = False) -> int:
    """Label the demonstrations of a pool file that have no ``metadata.task`` yet and write JSONL.

    ``pool_path`` is any pool file :func:`pie_retriever.pool.pools.load_pool` reads (JSONL, a JSON list of objects or
    strings, IEB's ``{label: {"samples": [...]}}``). ``field`` is ``instruction``, ``input``, ``output`` or a
    metadata key. An existing ``metadata.task`` is never replaced unless ``overwrite=True`` (then a label that
    changes is kept as ``metadata.gold_task``). With ``output=None`` it prints ``label<TAB>instruction`` lines
    (existing labels as they are). Prints how many labels were added; returns 0, or 2 on a bad input file.
    """
    from pie_retriever.errors import PoolFormatError
    from pie_retriever.labeling.api import label_demonstrations
    from pie_retriever.pool.pools import load_pool

    path = Path(pool_path)
    try:
        demos = load_pool(path)
        labelled, counts = label_demonstrations(demos, field=field, overwrite=overwrite)
    except PoolFormatError as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if output is None:
        for d in labelled:
            print(f"{d.metadata['task']}\t{normalize_space(d.instruction)}")
    else:
        lines = [json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in labelled]
        output = str(atomic_write_text(output, "".join(lines)))
    print(_summary(counts, overwrite, output), file=sys.stderr)
    return 0


def _summary(counts: dict[str, int], overwrite: bool, output: str | None) -> str:
    parts = [f"added {counts['added']} labels to {counts['total']} instructions"]
    if overwrite:
        parts.append(f"overwrote {counts['overwritten']} (old ones in metadata.gold_task), {counts['unchanged']} unchanged")
    elif counts["kept"]:
        parts.append(f"kept {counts['kept']} existing labels (--overwrite to relabel them)")
    return "; ".join(parts) + (f" -> {output}" if output else "")


# -- `pie-retriever label` -----------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list or IEB JSON)")
    p.add_argument("-o", "--output", default=None, help="write JSONL with metadata.task added (default: print label<TAB>instruction)")
    p.add_argument("--field", default="instruction", help="field holding the instruction (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="relabel records that already have metadata.task (the old label goes to metadata.gold_task)")


def run(args: argparse.Namespace) -> int:
    return main(args.pool, args.output, field=args.field, overwrite=args.overwrite)


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
    p_label.add_argument("--overwrite", action="store_true", help="relabel records that already have metadata.task")
    p_agree = sub.add_parser("agreement", help="exact agreement with the gold labels of IEB files")
    p_agree.add_argument("paths", nargs="+")
    p_agree.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "label":
        return main(args.pool, args.output, field=args.field, overwrite=args.overwrite)
    return _print_agreement(args.paths, args.limit)
