"""``pie-retriever train``: contrastively train an instruction encoder on task labels and save an artifact.

Reproduce the shipped models (``pie-minilm``, then the default ``pie-minilm-lc`` warm-started from it)::

    pie-retriever train --recipe default --data ../shared/ieb -o runs/pie-minilm
    pie-retriever train --recipe long-context --set init_adapter=runs/pie-minilm --data ../shared/ieb -o runs/pie-minilm-lc

Train on your own labelled pool (a metadata field such as ``task`` names each instruction's task)::

    pie-retriever train --pool pool.jsonl --label-field task [--auto-label] [--eval-split 0.2] -o runs/my-pool

Any argument of :class:`~pie_retriever.training.args.TrainingArguments` can be overridden with
``--set key=value`` (values are parsed as JSON when possible: ``--set lora_r=16 --set sources=["ift_test"]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pie_retriever.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from pie_retriever.training.args import RECIPES

    p.add_argument("-o", "--output", default=None, help="artifact folder to write (replaced atomically); required unless --print-config")
    p.add_argument("--pool", default=None, metavar="FILE",
                   help="train on your own pool file (JSONL, JSON list, IEB JSON) instead of IEB; labels from --label-field")
    p.add_argument("--label-field", default="task", help="with --pool: the metadata field holding the task label (default: %(default)s)")
    p.add_argument("--auto-label", action="store_true", help="with --pool: label instructions that have no label with pie_retriever.labeling")
    p.add_argument("--eval-split", type=float, default=0.2,
                   help="with --pool: share of each label held out to measure P@4 before/after (default: %(default)s; 0 = none)")
    p.add_argument("--split-by", default="instance", choices=["instance", "label"],
                   help="with --pool: hold out instructions of every label (instance) or whole labels, evaluated "
                        "leave-one-out (label: unseen tasks; for pools whose labels are small); default: %(default)s")
    p.add_argument("--eval-queries", default=None, metavar="FILE",
                   help="with --pool: labelled queries to evaluate on instead of a split (the whole pool trains)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch intra-op threads (default: every core)")
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
    from pie_retriever.training.args import TrainingArguments
    from pie_retriever.training.pool import POOL_DEFAULTS

    overrides: dict[str, Any] = dict(POOL_DEFAULTS) if getattr(args, "pool", None) else {}
    if args.config:
        with open(args.config) as fh:
            overrides.update(json.load(fh))
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"--set expects KEY=VALUE, got {item!r}."
            raise ConfigError(msg)
        overrides[key.strip()] = _parse_value(value)
    if args.data and not getattr(args, "pool", None):
        overrides["data_dir"] = args.data
    if getattr(args, "threads", None) is not None:
        overrides["threads"] = args.threads
    return TrainingArguments.from_recipe(args.recipe, **overrides)


def run(args: argparse.Namespace) -> int:
    targs = build_arguments(args)
    if args.print_config:
        print(json.dumps(targs.to_dict(), indent=2))
        return 0
    if not args.output:
        msg = "Pass -o DIR, the artifact folder to write (e.g. -o runs/mine)."
        raise ConfigError(msg)
    if args.pool:
        return _run_pool(args, targs)
    if not targs.data_dir:
        msg = "Pass --data DIR (the IEB folder, e.g. ../shared/ieb), set PIE_IEB_DIR, or train on your own pool with --pool FILE."
        raise ConfigError(msg)
    from pie_retriever.training.trainer import train

    result = train(targs, args.output, progress=not args.quiet)
    rep = result.data_report
    print(
        f"Trained {result.steps} steps on {rep.get('instructions')} instructions / {rep.get('labels')} labels "
        f"in {result.seconds / 60:.1f} min (final loss {result.final_loss:.4f}); "
        f"artifact {result.artifact_bytes / 1e6:.2f} MB → {result.output_dir}",
        file=sys.stderr,
    )
    return 0


def _run_pool(args: argparse.Namespace, targs: Any) -> int:
    from pie_retriever.pool.pools import load_pool
    from pie_retriever.training.pool import train_on_pool

    demos = load_pool(args.pool)
    queries = load_pool(args.eval_queries) if args.eval_queries else None
    res = train_on_pool(demos, args.output, label_field=args.label_field, auto_label=args.auto_label,
                        eval_split=args.eval_split, split_by=args.split_by, eval_queries=queries, args=targs,
                        progress=not args.quiet)
    rep = res.data_report
    print(f"Trained {res.steps} steps on {rep.get('instructions')} instructions / {rep.get('labels')} labels of {args.pool} "
          f"in {res.seconds['train']:.0f}s ({res.seconds['total']:.0f}s in all) → {res.output_dir}", file=sys.stderr)
    if res.base:
        where = f"{rep['eval_instructions']} held-out instructions" + (f" of {args.eval_queries}" if args.eval_queries else "")
        source = ("each other, leave-one-out (labels unseen in training)" if rep.get("split_by") == "label" and not args.eval_queries
                  else f"the {res.base['pool']} training instructions")
        print(f"Task match on {where} ({rep['eval_labels']} labels), retrieving from {source}:")
        rows = [("base  " + targs.base_model, res.base)]
        if res.default:  # the model a user gets without training: the row the tuned one has to beat
            rows.append(("shipped default " + res.default["model"], res.default))
        rows.append(("tuned " + str(res.output_dir), res.tuned))
        for name, m in rows:
            print(f"  {name}: P@1 {m['p@1']:.3f}  P@4 {m['p@4']:.3f}  MRR@10 {m['mrr@10']:.3f}")
    print(f"Loss curve: {res.loss_png}; report: {res.output_dir / 'pool_eval.json'}", file=sys.stderr)
    return 0
