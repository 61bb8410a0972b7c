"""``pie-retriever map POOL_OR_INDEX -o map.png [--color-by task|cluster] [--html]``: a 2-D task map.

Points are coloured by task label (gold ``metadata.task``, else the labeler's silver ``verb|noun``) or by
KMeans cluster named after its majority ``verb|noun``; the biggest groups are named on the map (labels never
overlap). ``--html`` also writes a self-contained page (hover a dot for its instruction).
"""

from __future__ import annotations

import argparse
import time

from pie_retriever.downstream import _cli
from pie_retriever.downstream.taskmap import COLOR_BY, PROJECTIONS, make_panel, plot_maps, write_html

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", metavar="POOL_OR_INDEX", help="pool file (JSONL, JSON list, Alpaca, IEB) or a saved index folder")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--color-by", default="task", choices=list(COLOR_BY), help="colour points by task label or by cluster (default: %(default)s)")
    p.add_argument("--clusters", type=int, default=None, help="number of clusters for --color-by cluster (default: best silhouette)")
    p.add_argument("--projection", default="auto", choices=list(PROJECTIONS), help="2-D projection (default: %(default)s = UMAP if installed)")
    p.add_argument("--max-labels", type=int, default=40, help="name at most this many groups on the map, biggest first (default: %(default)s)")
    p.add_argument("--html", action="store_true", help="also write an interactive HTML page next to the PNG")
    p.add_argument("--title", default=None, help="map title")
    _cli.add_common(p)


def run(args: argparse.Namespace) -> int:
    _cli.check_output(args.output, ".png")
    if args.labels == "none":
        args.labels = "silver" if args.color_by == "cluster" else "auto"  # a map always needs names
    items, t_encode = _cli.load(args.pool, args)
    labels = _cli.labels_of(items, args)
    start = time.perf_counter()
    title = args.title or f"{args.pool} ({len(items)} instructions, {items.encoder_name})"
    panel, summary = make_panel(items.texts, items.vectors, color_by=args.color_by, labels=labels, n_clusters=args.clusters,
                                projection=args.projection, seed=args.seed, title=title)
    skipped = plot_maps([panel], args.output, max_labels=args.max_labels)[title]
    seconds = time.perf_counter() - start
    msg = f"Map of {len(items)} instructions, {len(summary['groups'])} groups by {args.color_by} → {args.output}"
    if args.html:
        html_path = _cli.out_sibling(args.output, ".html")
        write_html(panel, html_path)
        msg += f", {html_path}"
    sil = summary["silhouette"]
    _cli.say(f"{msg} [embed {t_encode:.1f}s, map {seconds:.1f}s; silhouette of the groups: "
             f"{'n/a' if sil is None else format(sil, '.3f')}]")
    if skipped:
        _cli.say(f"{len(skipped)} names found no free spot and were left off: {', '.join(skipped[:10])}")
    return 0
