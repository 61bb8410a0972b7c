"""Command line: ``pie-retriever index|search|add|delete|demo|label|train|eval|bench|serve`` and ``--version``.

A dispatcher only: each subcommand lives in a module with ``add_arguments(parser)`` and ``run(args) -> int``
(or ``add_<name>_arguments``/``run_<name>`` for a module serving several, such as :mod:`pie_retriever.retrieval.cli`);
heavy libraries are imported inside ``run`` only. :func:`main` turns errors into one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Callable, Sequence

from pie_retriever.errors import PIEError

# name -> (module with add_arguments/run, one-line help). "module:name" means the module's
# add_<name>_arguments/run_<name> pair (one module serving several commands).
COMMANDS: dict[str, tuple[str, str]] = {
    "index": ("pie_retriever.retrieval.cli:index", "embed a pool file and save an index folder"),
    "search": ("pie_retriever.retrieval.cli:search", "retrieve demonstrations for a query (or a file of queries) from a saved index"),
    "add": ("pie_retriever.retrieval.cli:add", "embed the demonstrations of a pool file into a saved index"),
    "delete": ("pie_retriever.retrieval.cli:delete", "delete demonstrations from a saved index by id"),
    "demo": ("pie_retriever.demo", "index the bundled pool and compare PIE with BM25 (offline)"),
    "label": ("pie_retriever.labeling.cli", "give each instruction of a pool a verb|noun task label"),
    "train": ("pie_retriever.training.cli", "contrastively train an instruction encoder on task labels"),
    "eval": ("pie_retriever.evaluation.cli", "evaluate a model on IEB (clustering, similarity, task P@k)"),
    "bench": ("pie_retriever.evaluation.bench.cli", "benchmark quality, in-context learning, speed and memory vs BM25"),
    "export": ("pie_retriever.encoders.export", "export a model as a self-contained folder (hf: Hugging Face + sentence-transformers, for vLLM serving)"),
    "select": ("pie_retriever.downstream.cli:select", "pick a task-diverse subset of an instruction pool (KMeans, k-center, task quota)"),
    "compress": ("pie_retriever.downstream.cli:compress", "shrink an evaluation set while keeping its task distribution"),
    "compare": ("pie_retriever.downstream.cli:compare", "dataset task correlation: coverage and Wasserstein heatmaps of several pools"),
    "map": ("pie_retriever.downstream.cli:map", "draw a 2-D task map of a pool or index (UMAP / t-SNE), groups named by verb|noun"),
    "tasks": ("pie_retriever.downstream.cli:tasks", "discover the task clusters of an unlabelled pool, named by verb|noun"),
    "serve": ("pie_retriever.service.cli", "serve saved indexes over HTTP: search, few-shot prompts, durable writes (extra `serve`)"),
}


def _command_functions(spec: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]:
    """``(add_arguments, run)`` of a ``COMMANDS`` module spec (ImportError when its room is not installed)."""
    module, _, name = spec.partition(":")
    mod = importlib.import_module(module)
    if name:
        return getattr(mod, f"add_{name}_arguments"), getattr(mod, f"run_{name}")
    return mod.add_arguments, mod.run


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pie-retriever")
    except PackageNotFoundError:  # a source checkout that was not installed
        from pie_retriever import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pie-retriever", description="Pick few-shot demonstrations by task match.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--version", action="version", version=f"pie-retriever {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            add, run = _command_functions(module)
        except ImportError:
            p.set_defaults(_run=None, _missing=module.partition(":")[0])
            continue
        add(p)
        p.set_defaults(_run=run)
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
