"""``pie-retriever select POOL --budget N [--method kmeans|kcenter|task-quota|random] -o subset.jsonl``.

Encodes the pool, picks a task-diverse subset and writes it as JSONL. With task labels (gold
``metadata.task`` or silver ones from the labeler) it reports task coverage against random subsets (mean ±
sd over ``--seeds``) and against the same method on plain MiniLM embeddings (``--baseline-model``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pie_retriever.downstream import _cli
from pie_retriever.downstream.select import SELECT_METHODS, select_subset, selection_report

__all__ = ["add_arguments", "format_report", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("--budget", type=int, required=True, help="how many instructions to keep")
    p.add_argument("--method", default="kmeans", choices=list(SELECT_METHODS), help="selection method (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="JSONL file to write the subset to")
    p.add_argument("--baseline-model", default="minilm", help="also select with this encoder for the report; 'none' to skip (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="random subsets in the report (default: %(default)s)")
    p.add_argument("--niter", type=int, default=20, help="KMeans iterations (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="FILE", help="write the coverage report as JSON")
    _cli.add_common(p)


def _row(name: str, cov: dict[str, Any]) -> list[str]:
    def cell(key: str, fmt: str) -> str:
        sd = cov.get(f"{key}_sd")
        return format(cov[key], fmt) + (f" ± {format(sd, fmt)}" if sd is not None else "")

    return [name, cell("distinct", ".1f" if "distinct_sd" in cov else "d"), cell("label_recall", ".3f"),
            cell("entropy_bits", ".2f"), cell("entropy_norm", ".3f"), cell("rare_kept", ".3f")]


def format_report(report: dict[str, Any], model: str, baseline: str | None) -> str:
    sel = report["selected"]
    rows = [_row(f"{report['method']} on {model}", sel)]
    if "baseline" in report:
        rows.append(_row(f"{report['method']} on {baseline}", report["baseline"]))
    rows.append(_row(f"random ({report['random']['runs']} seeds)", report["random"]))
    head = (f"Task coverage at budget {report['budget']} ({sel['pool_labels']} labels in the pool; smallest tasks: "
            f"{sel['rare_labels']} labels with <= {sel['rare_max_size']} instructions)")
    return head + "\n" + _cli.table(["selection", "distinct", "label recall", "entropy (bits)", "evenness", "smallest kept"], rows)


def run(args: argparse.Namespace) -> int:
    _cli.check_output(args.output, ".jsonl")
    _cli.check_output(args.report, ".json")
    items, t_encode = _cli.load(args.pool, args)
    labels = _cli.labels_of(items, args) if args.method == "task-quota" or args.labels != "none" else None
    start = time.perf_counter()
    picked = select_subset(items.vectors, args.budget, args.method, labels=labels, seed=args.seed, niter=args.niter,
                           show_progress=len(items) >= 10000)
    t_select = time.perf_counter() - start
    path = _cli.write_jsonl([items.demos[i] for i in picked], args.output)
    _cli.say(f"Selected {len(picked)} of {len(items)} instructions ({args.method}, {items.encoder_name}) → {path} "
             f"[embed {t_encode:.1f}s, select {t_select:.1f}s]")
    if labels is None:
        return 0
    baseline = None if args.baseline_model in (None, "", "none") else args.baseline_model
    base_vectors = _cli.load(args.pool, args, model=baseline)[0].vectors if baseline else None
    report = selection_report(items.vectors, labels, args.budget, args.method, seeds=args.seeds, baseline_vectors=base_vectors,
                              seed=args.seed, picked=picked)
    report.update({"pool": args.pool, "n": len(items), "model": items.encoder_name, "baseline_model": baseline,
                   "seconds": {"embed": round(t_encode, 3), "select": round(t_select, 3)}})
    print(format_report(report, items.encoder_name, baseline))
    if args.report:
        _cli.write_json(report, args.report)
    return 0
