"""Command lines of the downstream tools (``pie-retriever select|compress|compare|map|tasks``).

Each command is an ``add_<name>_arguments(parser)`` / ``run_<name>(args) -> int`` pair, dispatched by
:mod:`pie_retriever.cli` (``"pie_retriever.downstream.cli:<name>"``); the shared pieces (common options, loading
with timings, output checks, tables) come first.

* ``pie-retriever select POOL --budget N [--method kmeans|kcenter|task-quota|random] -o subset.jsonl``: encodes the
  pool, picks a task-diverse subset and writes it as JSONL. With task labels (gold ``metadata.task`` or silver ones
  from the labeler) it reports task coverage against random subsets (mean ± sd over ``--seeds``) and against the
  same method on plain MiniLM embeddings (``--baseline-model``).
* ``pie-retriever compress EVALSET --ratio 0.1 -o small.jsonl [--method kmeans|stratified|random]``: keeps about
  ``ratio * n`` items, one per KMeans cluster; each written item gets ``metadata.weight`` = the size of its cluster
  (how many items of the full set it stands for; weights sum to n). With task labels it reports how far the small
  set's (weighted) task distribution is from the full set's, against random subsets of the same size.
* ``pie-retriever compare A B [C ...] -o corr.png``: dataset task correlation as two heatmaps and JSON. Each set is
  a pool file or index folder; ``NAME=PATH`` names it (default: the file name without extension).
* ``pie-retriever map POOL_OR_INDEX -o map.png [--color-by task|cluster] [--html]``: a 2-D task map. Points are
  coloured by task label (gold ``metadata.task``, else the labeler's silver ``verb|noun``) or by KMeans cluster
  named after its majority ``verb|noun``; the biggest groups are named on the map (labels never overlap).
  ``--html`` also writes a self-contained page (hover a dot for its instruction).
* ``pie-retriever tasks POOL [--clusters N] [-o tasks.json] [--json]``: the task structure of an unlabelled pool.
  Clusters the pool (the number of clusters with the best silhouette, unless ``--clusters``), names each by the
  labeler's majority ``verb|noun`` and prints a table: name, size, share, purity, an example.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever._util import atomic_write_text
from pie_retriever.downstream.compare import compare_sets, plot_comparison
from pie_retriever.downstream.compress import COMPRESS_METHODS, compress_indices, label_distance
from pie_retriever.downstream.embed import (
    LABEL_SOURCES,
    Items,
    is_index_folder,
    load_items,
    make_encoder,
    silver_labels,
    task_labels,
)
from pie_retriever.downstream.select import SELECT_METHODS, select_subset, selection_report
from pie_retriever.downstream.task_quality import annotate, notes
from pie_retriever.downstream.taskmap import COLOR_BY, PROJECTIONS, make_panel, plot_maps, write_html
from pie_retriever.downstream.tasks import discover_tasks, format_table
from pie_retriever.errors import ConfigError
from pie_retriever.types import Demonstration

__all__ = [
    "add_common", "add_compare_arguments", "add_compress_arguments", "add_map_arguments", "add_select_arguments",
    "add_tasks_arguments", "check_output", "format_report", "labels_of", "load", "out_sibling", "parse_sources",
    "run_compare", "run_compress", "run_map", "run_select", "run_tasks", "say", "table", "write_json", "write_jsonl",
]


# -- shared pieces -------------------------------------------------------------------------------------
def add_common(p: argparse.ArgumentParser, *, labels: bool = True) -> None:
    from pie_retriever.encoders.models import DEFAULT_MODEL

    p.add_argument("--model", default=None,
                   help=f"encoder for pool files: model alias (pie-minilm-lc, pie-minilm, minilm, smollm2) or folder "
                        f"(default: {DEFAULT_MODEL}, the library default); an index folder uses its stored vectors")
    p.add_argument("--label-field", default=None, help="copy this field of each demonstration to metadata.task")
    p.add_argument("--cache", default=None, metavar="DIR", help="keep embeddings in DIR (<hash>.npy) and reuse them on the next run")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace output files that already exist")
    if labels:
        p.add_argument("--labels", default="auto", choices=[*LABEL_SOURCES, "none"],
                       help="task labels for the report: auto = metadata.task if every row has one, else the verb|noun labeler; "
                            "none = no report (default: %(default)s)")
        p.add_argument("--labels-cache", default=None, metavar="FILE", help="JSON file caching silver labels by instruction")


def check_output(path: str | None, *suffixes: str, args: argparse.Namespace | None = None, inputs: Sequence[str] = ()) -> None:
    """Fail before any encoding when an output cannot be written, or would replace an input, a file inside an
    index folder, or (without ``--force`` in ``args``) an existing file."""
    if path is None:
        return
    from pie_retriever._util import check_output_target

    check_output_target(path, inputs=inputs, force=bool(getattr(args, "force", False)))
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


# -- select --------------------------------------------------------------------------------------------
def add_select_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("--budget", type=int, required=True, help="how many instructions to keep")
    p.add_argument("--method", default="kmeans", choices=list(SELECT_METHODS), help="selection method (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="JSONL file to write the subset to")
    p.add_argument("--baseline-model", default="minilm", help="also select with this encoder for the report; 'none' to skip (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="random subsets in the report (default: %(default)s)")
    p.add_argument("--niter", type=int, default=20, help="KMeans iterations (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="FILE", help="write the coverage report as JSON")
    add_common(p)


def _coverage_row(name: str, cov: dict[str, Any]) -> list[str]:
    def cell(key: str, fmt: str) -> str:
        sd = cov.get(f"{key}_sd")
        return format(cov[key], fmt) + (f" ± {format(sd, fmt)}" if sd is not None else "")

    return [name, cell("distinct", ".1f" if "distinct_sd" in cov else "d"), cell("label_recall", ".3f"),
            cell("entropy_bits", ".2f"), cell("entropy_norm", ".3f"), cell("rare_kept", ".3f")]


def format_report(report: dict[str, Any], model: str, baseline: str | None) -> str:
    """The task-coverage table of ``select`` (its selection vs the baseline encoder vs random subsets)."""
    sel = report["selected"]
    rows = [_coverage_row(f"{report['method']} on {model}", sel)]
    if "baseline" in report:
        rows.append(_coverage_row(f"{report['method']} on {baseline}", report["baseline"]))
    rows.append(_coverage_row(f"random ({report['random']['runs']} seeds)", report["random"]))
    head = (f"Task coverage at budget {report['budget']} ({sel['pool_labels']} labels in the pool; smallest tasks: "
            f"{sel['rare_labels']} labels with <= {sel['rare_max_size']} instructions)")
    return head + "\n" + table(["selection", "distinct", "label recall", "entropy (bits)", "evenness", "smallest kept"], rows)


def run_select(args: argparse.Namespace) -> int:
    check_output(args.output, ".jsonl", args=args, inputs=[args.pool])
    check_output(args.report, ".json", args=args, inputs=[args.pool, args.output])
    if args.report and args.labels == "none" and args.method != "task-quota":
        msg = f"--report {args.report}: the report measures task coverage and needs task labels; drop --labels none."
        raise ConfigError(msg)
    items, t_encode = load(args.pool, args)
    labels = labels_of(items, args) if args.method == "task-quota" or args.labels != "none" else None
    start = time.perf_counter()
    picked = select_subset(items.vectors, args.budget, args.method, labels=labels, seed=args.seed, niter=args.niter,
                           show_progress=len(items) >= 10000)
    t_select = time.perf_counter() - start
    path = write_jsonl([items.demos[i] for i in picked], args.output)
    say(f"Selected {len(picked)} of {len(items)} instructions ({args.method}, {items.encoder_name}) → {path} "
        f"[embed {t_encode:.1f}s, select {t_select:.1f}s]")
    if labels is None:
        return 0
    baseline = None if args.baseline_model in (None, "", "none") else args.baseline_model
    base_vectors = load(args.pool, args, model=baseline)[0].vectors if baseline else None
    report = selection_report(items.vectors, labels, args.budget, args.method, seeds=args.seeds, baseline_vectors=base_vectors,
                              seed=args.seed, picked=picked)
    report.update({"pool": args.pool, "n": len(items), "model": items.encoder_name, "baseline_model": baseline,
                   "seconds": {"embed": round(t_encode, 3), "select": round(t_select, 3)}})
    print(format_report(report, items.encoder_name, baseline))
    if args.report:
        write_json(report, args.report)
    return 0


# -- compress ------------------------------------------------------------------------------------------
def add_compress_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("evalset", help="evaluation set: pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("--ratio", type=float, default=0.1, help="share of the set to keep, in (0, 1] (default: %(default)s)")
    p.add_argument("--method", default="kmeans", choices=list(COMPRESS_METHODS), help="how to pick the items (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="JSONL file to write the compressed set to")
    p.add_argument("--seeds", type=int, default=20, help="random subsets in the report (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="FILE", help="write the summary as JSON")
    add_common(p)


def run_compress(args: argparse.Namespace) -> int:
    check_output(args.output, ".jsonl", args=args, inputs=[args.evalset])
    check_output(args.report, ".json", args=args, inputs=[args.evalset, args.output])
    items, t_encode = load(args.evalset, args)
    start = time.perf_counter()
    small = compress_indices(items.vectors, args.ratio, args.method, seed=args.seed, show_progress=len(items) >= 10000)
    seconds = time.perf_counter() - start
    demos = []
    for i, w in zip(small.indices, small.weights):
        d = copy.deepcopy(items.demos[i])
        d.metadata["weight"] = float(w)
        demos.append(d)
    path = write_jsonl(demos, args.output)
    say(f"Kept {len(small)} of {len(items)} items ({args.method}, {items.encoder_name}) → {path} "
        f"[embed {t_encode:.1f}s, compress {seconds:.1f}s]")
    report = {"evalset": args.evalset, "n": len(items), "kept": len(small), "ratio": args.ratio, "method": args.method,
              "model": items.encoder_name, "seconds": {"embed": round(t_encode, 3), "compress": round(seconds, 3)}}
    labels = labels_of(items, args)
    if labels is not None:
        rand = [label_distance(labels, compress_indices(items.vectors, args.ratio, "random", seed=s)) for s in range(args.seeds)]
        report["task_tv_distance"] = label_distance(labels, small)
        report["task_tv_distance_random"] = {"mean": float(np.mean(rand)), "sd": float(np.std(rand, ddof=1)) if len(rand) > 1 else 0.0}
        report["tasks_kept"] = len({labels[i] for i in small.indices})
        report["tasks"] = len(set(labels))
        r = report["task_tv_distance_random"]
        print(table(["subset", "tasks kept", "task distribution distance (TV)"], [
            [f"{args.method} ({len(small)} items)", f"{report['tasks_kept']} / {report['tasks']}", f"{report['task_tv_distance']:.3f}"],
            [f"random ({args.seeds} seeds)", "", f"{r['mean']:.3f} ± {r['sd']:.3f}"],
        ]))
    if args.report:
        write_json(report, args.report)
    return 0


# -- compare -------------------------------------------------------------------------------------------
def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sets", nargs="+", metavar="[NAME=]PATH", help="two or more pool files / index folders")
    p.add_argument("-o", "--output", required=True, help="PNG of the two heatmaps; the JSON goes next to it (or --json)")
    p.add_argument("--json", default=None, metavar="FILE", help="where to write the matrices (default: the PNG path with .json)")
    p.add_argument("--max-items", type=int, default=20000, help="subsample larger sets to this many rows (default: %(default)s)")
    p.add_argument("--title", default=None, help="figure title")
    add_common(p, labels=False)


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


def run_compare(args: argparse.Namespace) -> int:
    sources = parse_sources(args.sets)
    check_output(args.output, ".png", args=args, inputs=list(sources.values()))
    json_path = args.json or out_sibling(args.output, ".json")
    check_output(json_path, ".json", args=args, inputs=[*sources.values(), args.output])
    vectors: dict[str, np.ndarray] = {}
    model = encoder = None
    for name, path in sources.items():
        if encoder is None and not is_index_folder(path):
            encoder = make_encoder(args.model)  # loaded once for every pool file
        items, seconds = load(path, args, model=encoder)
        vectors[name] = items.vectors
        model = items.encoder_name
        say(f"{name}: {len(items)} instructions from {path} ({seconds:.1f}s)")
    start = time.perf_counter()
    result = compare_sets(vectors, max_items=args.max_items, seed=args.seed)
    result.update({"model": model, "sources": sources, "seconds": round(time.perf_counter() - start, 3)})
    plot_comparison(result, args.output, title=args.title or f"dataset task correlation ({model})")
    write_json(result, json_path)
    names = result["names"]
    for key, fmt in (("coverage", ".3f"), ("wasserstein", ".4f")):
        print(f"{key} (row set vs column set)")
        print(table(["", *names], [[n, *(format(v, fmt) for v in row)] for n, row in zip(names, result[key])]))
    say(f"→ {args.output}, {json_path}")
    return 0


# -- map -----------------------------------------------------------------------------------------------
def add_map_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", metavar="POOL_OR_INDEX", help="pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--color-by", default="task", choices=list(COLOR_BY), help="colour points by task label or by cluster (default: %(default)s)")
    p.add_argument("--clusters", type=int, default=None, help="number of clusters for --color-by cluster (default: best silhouette)")
    p.add_argument("--projection", default="auto", choices=list(PROJECTIONS), help="2-D projection (default: %(default)s = UMAP if installed)")
    p.add_argument("--max-labels", type=int, default=40, help="name at most this many groups on the map, biggest first (default: %(default)s)")
    p.add_argument("--html", action="store_true", help="also write an interactive HTML page next to the PNG")
    p.add_argument("--title", default=None, help="map title")
    add_common(p)


def run_map(args: argparse.Namespace) -> int:
    check_output(args.output, ".png", args=args, inputs=[args.pool])
    if args.html:
        check_output(out_sibling(args.output, ".html"), ".html", args=args, inputs=[args.pool])
    if args.labels == "none":
        args.labels = "silver" if args.color_by == "cluster" else "auto"  # a map always needs names
    items, t_encode = load(args.pool, args)
    labels = labels_of(items, args)
    start = time.perf_counter()
    title = args.title or f"{args.pool} ({len(items)} instructions, {items.encoder_name})"
    panel, summary = make_panel(items.texts, items.vectors, color_by=args.color_by, labels=labels, n_clusters=args.clusters,
                                projection=args.projection, seed=args.seed, title=title)
    skipped = plot_maps([panel], args.output, max_labels=args.max_labels)[title]
    seconds = time.perf_counter() - start
    msg = f"Map of {len(items)} instructions, {len(summary['groups'])} groups by {args.color_by} → {args.output}"
    if args.html:
        html_path = out_sibling(args.output, ".html")
        write_html(panel, html_path)
        msg += f", {html_path}"
    sil = summary["silhouette"]
    say(f"{msg} [embed {t_encode:.1f}s, map {seconds:.1f}s; silhouette of the groups: "
        f"{'n/a' if sil is None else format(sil, '.3f')}]")
    if skipped:
        say(f"{len(skipped)} names found no free spot and were left off: {', '.join(skipped[:10])}")
    return 0


# -- tasks ---------------------------------------------------------------------------------------------
def add_tasks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("--clusters", type=int, default=None, help="number of clusters (default: best cosine silhouette)")
    p.add_argument("-o", "--output", default=None, help="write the result as JSON (with every row's cluster)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--limit", type=int, default=50, help="table rows to print (default: %(default)s)")
    p.add_argument("--labels-cache", default=None, metavar="FILE", help="JSON file caching silver labels by instruction")
    add_common(p, labels=False)


def run_tasks(args: argparse.Namespace) -> int:
    check_output(args.output, ".json", args=args, inputs=[args.pool, args.labels_cache])
    items, t_encode = load(args.pool, args)
    start = time.perf_counter()
    labels = silver_labels(items.texts, cache=args.labels_cache)
    result = discover_tasks(items.texts, items.vectors, n_clusters=args.clusters, labels=labels, seed=args.seed,
                            show_progress=len(items) >= 10000)
    annotate(result, [d.metadata.get("task") for d in items.demos])  # gold purity, low-purity flags
    result.update({"pool": args.pool, "model": items.encoder_name,
                   "seconds": {"embed": round(t_encode, 3), "tasks": round(time.perf_counter() - start, 3)}})
    if args.output:
        write_json(result, args.output)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "assign"}, indent=2, ensure_ascii=False))
    else:
        how = "best silhouette" if result["silhouette"] else "--clusters"
        print(f"{result['k']} task clusters in {result['n']} instructions ({how}; {items.encoder_name})")
        print(format_table(result, limit=args.limit))
    for line in notes(result):
        say(line)
    return 0
