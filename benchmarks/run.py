#!/usr/bin/env python
"""Run the PIE-vs-BM25 benchmark from a source checkout: results/<name>.json + .png, and the benchmark page's tables.

    python benchmarks/run.py            # full run (~9 min on 2 idle cores) → results/bench.json + .png, docs/benchmark.md updated
    python benchmarks/run.py --quick    # ~1 min smoke run → results/bench-quick.json + .png (docs untouched)

Same options as `pie-retriever bench` (see `--help`), plus `--readme` and `--no-chart`. The IEB folder is
`--data`, else `$PIE_IEB_DIR`, else `<repo>/../shared/ieb` when it exists (this checkout's layout). The harness
lives in `pie_retriever/evaluation/bench/`; the tables and the chart in `benchmarks/render.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHECKOUT_IEB = REPO.parent / "shared" / "ieb"
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def build_parser() -> argparse.ArgumentParser:
    from pie_retriever.evaluation.bench import cli as bench_cli

    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0])
    bench_cli.add_arguments(parser)
    parser.add_argument("--readme", default=None,
                        help="render the tables into this page between <!-- bench:start/end --> markers "
                             "(default: docs/benchmark.md for a full run named 'bench', else none)")
    parser.add_argument("--no-readme", action="store_true", help="do not touch any page (the markdown is still printed)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.set_defaults(out_dir=str(REPO / "results"), force=True)  # this script's job is to refresh the shipped results
    return parser


def render_outputs(results: dict, json_path: Path, *, chart: bool, readme: str | None, log=print) -> None:
    """Draw the PNG next to the JSON, print the markdown, and update ``readme`` between the bench markers."""
    from render import plot_results, render_markdown, update_readme

    png = None
    if chart:
        try:
            png = plot_results(results, json_path.with_suffix(".png"))
        except ImportError:
            log("matplotlib is not installed; no chart (pip install 'pie-retriever[bench]')")
    print(render_markdown(results, json_path=str(json_path), png_path=str(png) if png else None))
    if readme:
        base = Path(readme).resolve().parent
        rel = lambda p: os.path.relpath(Path(p).resolve(), base)
        changed = update_readme(readme, render_markdown(results, json_path=rel(json_path), png_path=rel(png) if png else None))
        log(f"{readme}: bench section {'updated' if changed else 'unchanged'}")
    if png:
        log(f"chart → {png}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pie_retriever.evaluation.bench import cli as bench_cli

    args = build_parser().parse_args(argv)
    if args.ieb_dir is None and not os.environ.get("PIE_IEB_DIR") and CHECKOUT_IEB.is_dir():
        args.ieb_dir = str(CHECKOUT_IEB)
    if args.no_readme:
        args.readme = None
    elif args.readme is None and not args.quick and not args.pool and args.name in (None, "bench"):
        from render import default_target

        args.readme = str(default_target(REPO))
    results, path = bench_cli.execute(args)
    render_outputs(results, path, chart=not args.no_chart, readme=args.readme, log=lambda m: print(m, file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
