"""Shared pieces of the downstream subcommands: common options, loading with timings, output checks, tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from pie_retriever._util import atomic_write_text
from pie_retriever.downstream.embed import LABEL_SOURCES, Items, load_items, task_labels
from pie_retriever.errors import ConfigError
from pie_retriever.types import Demonstration


def add_common(p: argparse.ArgumentParser, *, labels: bool = True) -> None:
    p.add_argument("--model", default=None, help="encoder: model alias (pie-minilm, minilm, smollm2) or folder; default: the library default")
    p.add_argument("--label-field", default=None, help="copy this field of each demonstration to metadata.task")
    p.add_argument("--cache", default=None, metavar="DIR", help="keep embeddings in DIR (<hash>.npy) and reuse them on the next run")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    if labels:
        p.add_argument("--labels", default="auto", choices=[*LABEL_SOURCES, "none"],
                       help="task labels for the report: auto = metadata.task if every row has one, else the verb|noun labeler; "
                            "none = no report (default: %(default)s)")
        p.add_argument("--labels-cache", default=None, metavar="FILE", help="JSON file caching silver labels by instruction")


def check_output(path: str | None, *suffixes: str) -> None:
    """Fail before any encoding when an output cannot be written."""
    if path is None:
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        msg = f"Output folder {parent} does not exist; create it or pass another -o path."
        raise FileNotFoundError(msg)
    if suffixes and not str(path).lower().endswith(suffixes):
        msg = f"Output {path!r} should end in {' or '.join(suffixes)}."
        raise ConfigError(msg)


def load(source: str, args: argparse.Namespace, model: Any = "__args__") -> tuple[Items, float]:
    """Items of ``source`` with ``args.model`` (or ``model``), and the seconds it took."""
    start = time.perf_counter()
    items = load_items(source, args.model if model == "__args__" else model, label_field=args.label_field,
                       cache_dir=args.cache, show_progress=sys.stderr.isatty() or None)
    return items, time.perf_counter() - start


def labels_of(items: Items, args: argparse.Namespace) -> list[str] | None:
    if getattr(args, "labels", "none") == "none":
        return None
    return task_labels(items.demos, args.labels, cache=args.labels_cache)


def write_jsonl(demos: Sequence[Demonstration], path: str) -> Path:
    return atomic_write_text(path, "".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in demos))


def write_json(obj: Any, path: str) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns (the first left-aligned)."""
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths), *map(fmt, cells[1:])])


def say(message: str) -> None:
    print(message, file=sys.stderr)


def out_sibling(path: str, suffix: str) -> str:
    root, _ = os.path.splitext(path)
    return root + suffix
