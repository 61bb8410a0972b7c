#!/usr/bin/env python
"""Render the benchmark page's tables from a results JSON (no benchmark is run).

    python benchmarks/render_readme.py                          # results/bench.json → docs/benchmark.md
    python benchmarks/render_readme.py --chart                  # also redraw results/bench.png from the JSON
    python benchmarks/render_readme.py --results results/bench-quick.json --readme /tmp/README.md

Only the text between `<!-- bench:start -->` and `<!-- bench:end -->` is replaced (in docs/benchmark.md, or
README.md when that is the page holding the markers); the page is re-read right before writing, so other
sections edited meanwhile are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    from render import default_target, plot_results, render_markdown, update_readme

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(REPO / "results" / "bench.json"), help="results JSON (default: %(default)s)")
    p.add_argument("--readme", default=str(default_target(REPO)), help="page to update between the bench markers (default: %(default)s)")
    p.add_argument("--png", default=None, help="chart to link (default: the results file with .png, if it exists)")
    p.add_argument("--chart", action="store_true", help="(re)draw the chart from the JSON first (needs matplotlib)")
    p.add_argument("--print", action="store_true", help="print the markdown instead of writing the README")
    args = p.parse_args(argv)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text(encoding="utf-8"))
    png = Path(args.png) if args.png else results_path.with_suffix(".png")
    if args.chart:
        plot_results(results, png)
    base = Path(args.readme).resolve().parent
    rel = lambda path: os.path.relpath(Path(path).resolve(), base)
    md = render_markdown(results, json_path=rel(results_path), png_path=rel(png) if png.is_file() else None)
    if args.print:
        print(md)
        return 0
    changed = update_readme(args.readme, md)
    print(f"{args.readme}: bench section {'updated' if changed else 'unchanged'} from {results_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
