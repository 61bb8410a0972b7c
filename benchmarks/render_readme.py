#!/usr/bin/env python
"""Render the README's benchmark section from a results JSON (no benchmark is run).

    python benchmarks/render_readme.py                          # results/bench.json → README.md
    python benchmarks/render_readme.py --results results/bench-quick.json --readme /tmp/README.md

Only the text between `<!-- bench:start -->` and `<!-- bench:end -->` is replaced; the README is re-read
right before writing, so other sections edited meanwhile are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from pie_retriever.evaluation.bench import render_markdown, update_readme

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(REPO / "results" / "bench.json"), help="results JSON (default: %(default)s)")
    p.add_argument("--readme", default=str(REPO / "README.md"), help="README to update (default: %(default)s)")
    p.add_argument("--png", default=None, help="chart to link (default: the results file with .png, if it exists)")
    p.add_argument("--print", action="store_true", help="print the markdown instead of writing the README")
    args = p.parse_args(argv)
    results_path = Path(args.results)
    results = json.loads(results_path.read_text(encoding="utf-8"))
    png = Path(args.png) if args.png else results_path.with_suffix(".png")
    base = Path(args.readme).resolve().parent
    rel = lambda path: os.path.relpath(Path(path).resolve(), base)  # noqa: E731
    md = render_markdown(results, json_path=rel(results_path), png_path=rel(png) if png.is_file() else None)
    if args.print:
        print(md)
        return 0
    changed = update_readme(args.readme, md)
    print(f"{args.readme}: bench section {'updated' if changed else 'unchanged'} from {results_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
