"""``pie-retriever compare A B [C ...] -o corr.png``: dataset task correlation as two heatmaps and JSON.

Each set is a pool file or index folder; ``NAME=PATH`` names it (default: the file name without extension).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pie_retriever.downstream import _cli
from pie_retriever.downstream.compare import compare_sets, plot_comparison
from pie_retriever.downstream.embed import is_index_folder, make_encoder
from pie_retriever.errors import ConfigError

__all__ = ["add_arguments", "parse_sources", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sets", nargs="+", metavar="[NAME=]PATH", help="two or more pool files / index folders")
    p.add_argument("-o", "--output", required=True, help="PNG of the two heatmaps; the JSON goes next to it (or --json)")
    p.add_argument("--json", default=None, metavar="FILE", help="where to write the matrices (default: the PNG path with .json)")
    p.add_argument("--max-items", type=int, default=20000, help="subsample larger sets to this many rows (default: %(default)s)")
    p.add_argument("--title", default=None, help="figure title")
    _cli.add_common(p, labels=False)


def parse_sources(specs: list[str]) -> dict[str, str]:
    """``{name: path}`` from ``NAME=PATH`` or ``PATH`` items (a name is the file stem; names must be unique)."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            name, path = Path(spec).stem or spec, spec
        if name in out:
            msg = f"Two sets are named {name!r}; name them with NAME=PATH."
            raise ConfigError(msg)
        out[name] = path
    if len(out) < 2:
        msg = f"compare needs at least two sets, got {len(out)}: {specs}."
        raise ConfigError(msg)
    return out


def run(args: argparse.Namespace) -> int:
    sources = parse_sources(args.sets)
    _cli.check_output(args.output, ".png")
    json_path = args.json or _cli.out_sibling(args.output, ".json")
    _cli.check_output(json_path, ".json")
    vectors: dict[str, np.ndarray] = {}
    model = encoder = None
    for name, path in sources.items():
        if encoder is None and not is_index_folder(path):
            encoder = make_encoder(args.model)  # loaded once for every pool file
        items, seconds = _cli.load(path, args, model=encoder)
        vectors[name] = items.vectors
        model = items.encoder_name
        _cli.say(f"{name}: {len(items)} instructions from {path} ({seconds:.1f}s)")
    start = time.perf_counter()
    result = compare_sets(vectors, max_items=args.max_items, seed=args.seed)
    result.update({"model": model, "sources": sources, "seconds": round(time.perf_counter() - start, 3)})
    plot_comparison(result, args.output, title=args.title or f"dataset task correlation ({model})")
    _cli.write_json(result, json_path)
    names = result["names"]
    for key, fmt in (("coverage", ".3f"), ("wasserstein", ".4f")):
        print(f"{key} (row set vs column set)")
        print(_cli.table(["", *names], [[n, *(format(v, fmt) for v in row)] for n, row in zip(names, result[key])]))
    _cli.say(f"→ {args.output}, {json_path}")
    return 0
