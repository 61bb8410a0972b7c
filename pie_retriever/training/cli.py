"""``pie-retriever train``: contrastively train an instruction encoder on task labels and save an artifact.

Reproduce the shipped default::

    pie-retriever train --recipe default --data ../shared/ieb -o pie_retriever/artifacts/pie-minilm

Any argument of :class:`~pie_retriever.training.args.TrainingArguments` can be overridden with
``--set key=value`` (values are parsed as JSON when possible: ``--set lora_r=16 --set sources=["ift_test"]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .args import RECIPES

    p.add_argument("-o", "--output", required=True, help="artifact folder to write (replaced atomically)")
    p.add_argument("--data", default=os.environ.get("PIE_IEB_DIR"),
                   help="IEB folder (ift_test.json, eft_train_unsup.json; eft_test.json and "
                        "intention_similarity_test.json are read only to exclude their instructions). Default: $PIE_IEB_DIR")
    p.add_argument("--recipe", default="default", choices=list(RECIPES), help="named configuration (default: %(default)s)")
    p.add_argument("--config", default=None, help="JSON file of TrainingArguments overrides (applied after --recipe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one argument; repeatable")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved arguments and exit")


def _parse_value(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def build_arguments(args: argparse.Namespace) -> Any:
    from .args import TrainingArguments

    overrides: dict[str, Any] = {}
    if args.config:
        with open(args.config) as fh:
            overrides.update(json.load(fh))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"--set expects KEY=VALUE, got {item!r}."
            raise ConfigError(msg)
        overrides[key.strip()] = _parse_value(value)
    if args.data:
        overrides["data_dir"] = args.data
    return TrainingArguments.from_recipe(args.recipe, **overrides)


def run(args: argparse.Namespace) -> int:
    from .trainer import train

    targs = build_arguments(args)
    if args.print_config:
        print(json.dumps(targs.to_dict(), indent=2))
        return 0
    if not targs.data_dir:
        msg = "Pass --data DIR (the IEB folder, e.g. ../shared/ieb) or set PIE_IEB_DIR."
        raise ConfigError(msg)
    result = train(targs, args.output, progress=not args.quiet)
    rep = result.data_report
    print(
        f"Trained {result.steps} steps on {rep.get('instructions')} instructions / {rep.get('labels')} labels "
        f"in {result.seconds / 60:.1f} min (final loss {result.final_loss:.4f}); "
        f"artifact {result.artifact_bytes / 1e6:.2f} MB → {result.output_dir}",
        file=sys.stderr,
    )
    return 0
