"""``pie-retriever tasks POOL [--clusters N] [-o tasks.json] [--json]``: the task structure of an unlabelled pool.

Clusters the pool (the number of clusters with the best silhouette, unless ``--clusters``), names each by
the labeler's majority ``verb|noun`` and prints a table: name, size, share, purity, an example.
"""

from __future__ import annotations

import argparse
import json
import time

from pie_retriever.downstream import _cli
from pie_retriever.downstream.tasks import discover_tasks, format_table

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("--clusters", type=int, default=None, help="number of clusters (default: best cosine silhouette)")
    p.add_argument("-o", "--output", default=None, help="write the result as JSON (with every row's cluster)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--limit", type=int, default=50, help="table rows to print (default: %(default)s)")
    p.add_argument("--labels-cache", default=None, metavar="FILE", help="JSON file caching silver labels by instruction")
    _cli.add_common(p, labels=False)


def run(args: argparse.Namespace) -> int:
    _cli.check_output(args.output, ".json")
    items, t_encode = _cli.load(args.pool, args)
    from pie_retriever.downstream.embed import silver_labels

    start = time.perf_counter()
    labels = silver_labels(items.texts, cache=args.labels_cache)
    result = discover_tasks(items.texts, items.vectors, n_clusters=args.clusters, labels=labels, seed=args.seed,
                            show_progress=len(items) >= 10000)
    result.update({"pool": args.pool, "model": items.encoder_name,
                   "seconds": {"embed": round(t_encode, 3), "tasks": round(time.perf_counter() - start, 3)}})
    if args.output:
        _cli.write_json(result, args.output)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "assign"}, indent=2, ensure_ascii=False))
    else:
        how = "best silhouette" if result["silhouette"] else "--clusters"
        print(f"{result['k']} task clusters in {result['n']} instructions ({how}; {items.encoder_name})")
        print(format_table(result, limit=args.limit))
    return 0
