#!/usr/bin/env python
"""Run the PIE-vs-BM25 benchmark from a source checkout: results/<name>.json + .png, and the README section.

    python benchmarks/run.py            # full run (~9 min on 2 idle cores) → results/bench.json, README updated
    python benchmarks/run.py --quick    # ~1 min smoke run → results/bench-quick.json (README untouched)

Same options as `pie-retriever bench` (see `--help`); the logic lives in pie_retriever/evaluation/bench.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from pie_retriever.evaluation import bench_cli

    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0])
    bench_cli.add_arguments(parser)
    parser.set_defaults(out_dir=str(REPO / "results"))
    args = parser.parse_args(argv)
    if args.readme is None and not args.quick and not args.pool and args.name in (None, "bench"):
        args.readme = str(REPO / "README.md")
    return bench_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
