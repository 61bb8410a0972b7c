"""The command line of the labeler: ``pie-retriever label`` (:func:`add_arguments` / :func:`run`, dispatched by
:mod:`pie_retriever.cli`; ``python -m pie_retriever.labeling`` is the same command line, :func:`module_main`).

``pie-retriever label POOL [-o OUT] [--field FIELD] [--overwrite]``: ``verb|noun`` task labels for the instructions
of a pool that have none (existing labels are kept unless ``--overwrite``).

``pie-retriever label agreement IEB_FILE [IEB_FILE ...] [--limit N]``: exact agreement of the labeler with the gold
labels of IEB files (a pool file that is literally named ``agreement`` is still labelled when no IEB file follows).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pie_retriever._util import atomic_write_text
from pie_retriever.errors import PoolFormatError
from pie_retriever.labeling.api import label_agreement
from pie_retriever.labeling.rules import normalize_space

__all__ = ["add_arguments", "main", "module_main", "run"]


def main(pool_path: str, output: str | None = None, field: str = "instruction", overwrite: bool = False,
         force: bool = False) -> int:
    """Label the demonstrations of a pool file that have no ``metadata.task`` yet and write JSONL.

    ``pool_path`` is any pool file :func:`pie_retriever.pool.pools.load_pool` reads (JSONL, a JSON list of objects or
    strings, IEB's ``{label: {"samples": [...]}}``). ``field`` is ``instruction``, ``input``, ``output`` or a
    metadata key. An existing ``metadata.task`` is never replaced unless ``overwrite=True`` (then a label that
    changes is kept as ``metadata.gold_task``). With ``output=None`` it prints ``label<TAB>instruction`` lines
    (existing labels as they are). Prints how many labels were added; returns 0, or 2 on a bad input file.
    ``output`` may not be the pool file itself nor a file inside an index folder, nor exist unless ``force``.
    """
    from pie_retriever._util import check_output_target
    from pie_retriever.labeling.api import label_demonstrations
    from pie_retriever.pool.pools import load_pool

    path = Path(pool_path)
    try:
        check_output_target(output, inputs=[pool_path], force=force)
        demos = load_pool(path)
        labelled, counts = label_demonstrations(demos, field=field, overwrite=overwrite)
    except (PoolFormatError, OSError, ValueError) as exc:
        return _input_error(path, exc)
    if output is None:
        for d in labelled:
            print(f"{d.metadata['task']}\t{normalize_space(d.instruction)}")
    else:
        lines = [json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in labelled]
        output = str(atomic_write_text(output, "".join(lines)))
    print(_summary(counts, overwrite, output), file=sys.stderr)
    return 0


def _input_error(path: Path, exc: BaseException) -> int:
    """One ``pie-retriever label: error: ...`` line naming the file once; returns 2."""
    message = str(exc)
    if isinstance(exc, PoolFormatError) and str(path) not in message:
        message = f"{path}: {message}"
    print(f"pie-retriever label: error: {message}", file=sys.stderr)
    return 2


def _summary(counts: dict[str, int], overwrite: bool, output: str | None) -> str:
    parts = [f"added {counts['added']} labels to {counts['total']} instructions"]
    if overwrite:
        parts.append(f"overwrote {counts['overwritten']} (old ones in metadata.gold_task), {counts['unchanged']} unchanged")
    elif counts["kept"]:
        parts.append(f"kept {counts['kept']} existing labels (--overwrite to relabel them)")
    return "; ".join(parts) + (f" -> {output}" if output else "")


# -- `pie-retriever label` / `python -m pie_retriever.labeling` ---------------------------------------------------
AGREEMENT = "agreement"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.usage = ("%(prog)s [-h] [-o OUTPUT] [--field FIELD] [--overwrite] pool\n"
               "       %(prog)s agreement IEB_FILE [IEB_FILE ...] [--limit N]")
    p.add_argument("pool", help="pool file (JSONL, JSON list or IEB JSON); or the word 'agreement' followed by IEB files")
    p.add_argument("ieb_files", nargs="*", metavar="IEB_FILE",
                   help="with 'agreement': IEB files (eft_test.json, ift_test.json, ...) to score the labels against")
    p.add_argument("-o", "--output", default=None, help="write JSONL with metadata.task added (default: print label<TAB>instruction)")
    p.add_argument("--field", default="instruction", help="field holding the instruction (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing -o file")
    p.add_argument("--overwrite", action="store_true",
                   help="relabel records that already have metadata.task (the old label goes to metadata.gold_task)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="with 'agreement': only the first N instructions of each file")
    p.set_defaults(_label_parser=p)


def _usage_error(args: argparse.Namespace, message: str) -> int:
    parser = getattr(args, "_label_parser", None)
    if parser is not None:
        parser.error(message)  # prints the usage and exits 2, like any other bad argument
    print(f"pie-retriever label: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.pool == AGREEMENT and (args.ieb_files or not Path(AGREEMENT).exists()):
        return _run_agreement(args)
    if args.ieb_files:
        return _usage_error(args, f"label takes one pool file, got {len(args.ieb_files)} more: {' '.join(args.ieb_files)} "
                                  f"(to score IEB files: label {AGREEMENT} IEB_FILE ...)")
    if args.limit is not None:
        return _usage_error(args, f"--limit is for 'label {AGREEMENT}' only")
    return main(args.pool, args.output, field=args.field, overwrite=args.overwrite, force=args.force)


def _run_agreement(args: argparse.Namespace) -> int:
    if not args.ieb_files:
        return _usage_error(args, f"{AGREEMENT} needs at least one IEB file")
    unused = [flag for flag, used in (("-o/--output", args.output is not None), ("--field", args.field != "instruction"),
                                      ("--overwrite", args.overwrite)) if used]
    if unused:
        return _usage_error(args, f"{', '.join(unused)} do not apply to '{AGREEMENT}'")
    return _print_agreement(args.ieb_files, args.limit)


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
    """``python -m pie_retriever.labeling ...``: the ``pie-retriever label`` command line under another name.

    ``python -m pie_retriever.labeling [label] POOL [-o OUT]`` and ``python -m pie_retriever.labeling agreement
    IEB_FILE [...]`` (a leading ``label``, the old spelling, is dropped).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["label"]:
        words = words[1:]
    parser = argparse.ArgumentParser(
        prog="python -m pie_retriever.labeling", description="IEB-style verb|noun task labels for instructions."
    )
    add_arguments(parser)
    return run(parser.parse_args(words))
