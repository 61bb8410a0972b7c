"""Command line: ``pie-retriever index|search|demo|label|train|eval|bench``.

Each subcommand lives in a module with ``add_arguments(parser)`` and ``run(args) -> int``; heavy
libraries are imported inside ``run`` only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Sequence

from .errors import ConfigError, PIEError

# name -> (module with add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "index": ("pie_retriever.cli", "embed a pool file and save an index folder"),
    "search": ("pie_retriever.cli", "retrieve demonstrations for a query from a saved index"),
    "demo": ("pie_retriever.demo", "index the bundled pool and compare PIE with BM25 (offline)"),
    "label": ("pie_retriever.labeling.cli", "give each instruction of a pool a verb|noun task label"),
    "train": ("pie_retriever.training.cli", "contrastively train an instruction encoder on task labels"),
    "eval": ("pie_retriever.evaluation.cli", "evaluate a model on IEB (clustering, similarity, task P@k)"),
    "bench": ("pie_retriever.bench.cli", "benchmark quality, in-context learning, speed and memory vs BM25"),
}


# -- index ---------------------------------------------------------------------------------------------
def add_index_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file: JSONL, JSON list, Alpaca JSON, or IEB {label: {samples}} JSON")
    p.add_argument("-o", "--output", required=True, help="index folder to write (replaced atomically if it exists)")
    p.add_argument("--model", default=None, help="model alias, local folder or cached hub id (default: %(default)s → the library default)")
    p.add_argument("--prompt", default=None, help="prompt name (pie, plain) or template with {instruction}; default: the model's")
    p.add_argument("--pooling", default=None, choices=["mean", "cls", "last", "last2"], help="pooling; default: the model's")
    p.add_argument("--index", default="flat", choices=["flat", "hnsw", "numpy"], help="index kind (default: %(default)s)")
    p.add_argument("--embed-fields", default="instruction", help="comma-separated fields to embed (default: %(default)s)")
    p.add_argument("--dedupe", action="store_true", help="skip demonstrations whose embedded text is already indexed")
    p.add_argument("--label-field", default=None, help="copy this field to metadata.task")


def run_index(args: argparse.Namespace) -> int:
    import time

    from .encoders.transformer import TransformerEncoder
    from .models import DEFAULT_MODEL
    from .persistence import check_save_target
    from .pools import load_pool
    from .retriever import PIERetriever

    check_save_target(args.output)  # before the model loads and the pool is encoded
    demos = load_pool(args.pool, label_field=args.label_field)
    encoder = TransformerEncoder(args.model or DEFAULT_MODEL, prompt=args.prompt, pooling=args.pooling)
    start = time.perf_counter()
    retriever = PIERetriever.from_demonstrations(
        demos, encoder, index=args.index, embed_fields=[f.strip() for f in args.embed_fields.split(",")],
        dedupe=args.dedupe, show_progress=True,
    )
    path = retriever.save(args.output)
    elapsed = time.perf_counter() - start
    print(f"Indexed {len(retriever)} demonstrations from {args.pool} with {encoder.model_spec} "
          f"({encoder.pooling} pooling) in {elapsed:.1f}s → {path}", file=sys.stderr)
    return 0


# -- search --------------------------------------------------------------------------------------------
def add_search_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", metavar="DIR", help="index folder written by `pie-retriever index`")
    p.add_argument("query", help="the instruction to find demonstrations for")
    p.add_argument("-k", type=int, default=4, help="number of demonstrations (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {rank, score, id, instruction, input, output, metadata}")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="metadata filter; repeat for several keys")
    p.add_argument("--min-score", type=float, default=None, help="drop hits with a cosine score below this")
    p.add_argument("--mmr", action="store_true", help="diversify the hits with maximal marginal relevance")


def run_search(args: argparse.Namespace) -> int:
    from .retriever import PIERetriever

    filters = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"--filter expects KEY=VALUE, got {item!r}."
            raise ConfigError(msg)
        filters.setdefault(key, []).append(value)
    retriever = PIERetriever.load(args.index_dir)
    hits = retriever.retrieve(args.query, k=args.k, filter=filters or None, min_score=args.min_score, mmr=args.mmr)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return 0
    for h in hits:
        task = h.demonstration.metadata.get("task")
        label = f" [{task}]" if task else ""
        print(f"{h.rank + 1}. {h.score:.3f}{label} {h.demonstration.id}: {h.demonstration.instruction}")
    return 0


_LOCAL = {"index": (add_index_arguments, run_index), "search": (add_search_arguments, run_search)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pie-retriever", description="Pick few-shot demonstrations by task match.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in _LOCAL:
            add, run = _LOCAL[name]
            add(p)
            p.set_defaults(_run=run)
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError:
            p.set_defaults(_run=None, _missing=module)
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. Operational errors print one line and exit 1 (a traceback only with ``-v``);
    Ctrl-C exits 130 and a closed output pipe (``| head``) exits quietly."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    if args._run is None:
        print(f"pie-retriever {args.command}: this command is not available in this installation ({args._missing} is missing).", file=sys.stderr)
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly; point stdout at devnull so the interpreter's final
        # flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"pie-retriever {args.command}: interrupted", file=sys.stderr)
        return 130
    except (PIEError, OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        print(f"pie-retriever {args.command}: error: {_error_message(exc)}", file=sys.stderr)
        if args.verbose:
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
