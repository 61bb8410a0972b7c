"""`pie-retriever label POOL [-o OUT]`: verb|noun task labels for the instructions of a pool."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pool", help="pool file (JSONL, JSON list or IEB JSON)")
    p.add_argument("-o", "--output", default=None, help="write JSONL with metadata.task added (default: print label<TAB>instruction)")
    p.add_argument("--field", default="instruction", help="field holding the instruction (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from .labeling import main

    return main(args.pool, args.output, field=args.field)
