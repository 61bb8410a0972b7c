"""``pie-retriever compress EVALSET --ratio 0.1 -o small.jsonl [--method kmeans|stratified|random]``.

Keeps about ``ratio * n`` items, one per KMeans cluster; each written item gets ``metadata.weight`` = the
size of its cluster (how many items of the full set it stands for; weights sum to n). With task labels it
reports how far the small set's (weighted) task distribution is from the full set's, against random
subsets of the same size.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from pie_retriever.downstream import _cli
from pie_retriever.downstream.compress import COMPRESS_METHODS, compress_indices, label_distance

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("evalset", help="evaluation set: pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("--ratio", type=float, default=0.1, help="share of the set to keep, in (0, 1] (default: %(default)s)")
    p.add_argument("--method", default="kmeans", choices=list(COMPRESS_METHODS), help="how to pick the items (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="JSONL file to write the compressed set to")
    p.add_argument("--seeds", type=int, default=20, help="random subsets in the report (default: %(default)s)")
    p.add_argument("--report", default=None, metavar="FILE", help="write the summary as JSON")
    _cli.add_common(p)


def run(args: argparse.Namespace) -> int:
    _cli.check_output(args.output, ".jsonl")
    _cli.check_output(args.report, ".json")
    items, t_encode = _cli.load(args.evalset, args)
    start = time.perf_counter()
    small = compress_indices(items.vectors, args.ratio, args.method, seed=args.seed, show_progress=len(items) >= 10000)
    seconds = time.perf_counter() - start
    demos = []
    for i, w in zip(small.indices, small.weights):
        d = copy.deepcopy(items.demos[i])
        d.metadata["weight"] = float(w)
        demos.append(d)
    path = _cli.write_jsonl(demos, args.output)
    _cli.say(f"Kept {len(small)} of {len(items)} items ({args.method}, {items.encoder_name}) → {path} "
             f"[embed {t_encode:.1f}s, compress {seconds:.1f}s]")
    report = {"evalset": args.evalset, "n": len(items), "kept": len(small), "ratio": args.ratio, "method": args.method,
              "model": items.encoder_name, "seconds": {"embed": round(t_encode, 3), "compress": round(seconds, 3)}}
    labels = _cli.labels_of(items, args)
    if labels is not None:
        rand = [label_distance(labels, compress_indices(items.vectors, args.ratio, "random", seed=s)) for s in range(args.seeds)]
        report["task_tv_distance"] = label_distance(labels, small)
        report["task_tv_distance_random"] = {"mean": float(np.mean(rand)), "sd": float(np.std(rand, ddof=1)) if len(rand) > 1 else 0.0}
        report["tasks_kept"] = len({labels[i] for i in small.indices})
        report["tasks"] = len(set(labels))
        r = report["task_tv_distance_random"]
        print(_cli.table(["subset", "tasks kept", "task distribution distance (TV)"], [
            [f"{args.method} ({len(small)} items)", f"{report['tasks_kept']} / {report['tasks']}", f"{report['task_tv_distance']:.3f}"],
            [f"random ({args.seeds} seeds)", "", f"{r['mean']:.3f} ± {r['sd']:.3f}"],
        ]))
    if args.report:
        _cli.write_json(report, args.report)
    return 0
