"""`pie-retriever bench`: quality, in-context learning, speed and memory vs BM25 → results/<name>.json (+ PNG).

Examples::

    pie-retriever bench                              # the full benchmark (IEB from $PIE_IEB_DIR or ../shared/ieb)
    pie-retriever bench --quick                      # ~1-minute smoke run → results/bench-quick.json
    pie-retriever bench --pool my_pool.jsonl --label-field task   # task-match quality on your pool (LOO)
    pie-retriever bench --sections speed --sizes 1000,10000       # only speed, two sizes
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _sizes(value: str) -> tuple[int, ...]:
    out = []
    for v in _csv(value):
        v = v.lower().replace("_", "")
        mult = 1000 if v.endswith("k") else 1
        out.append(int(float(v.rstrip("k")) * mult))
    return tuple(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .bench import ICL_CONDITIONS, METHODS, SECTIONS, SETS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("Examples::", 1)[1]
    p.add_argument("--quick", action="store_true", help="about one minute: small subsets, no decoder, pools of 500/2k/20k")
    p.add_argument("--name", default=None, help="results file stem (default: bench, or bench-quick with --quick)")
    p.add_argument("--sections", type=_csv, default=None, help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all; quality only with --pool)")
    p.add_argument("--sets", type=_csv, default=None, help=f"quality sets, comma-separated from: {', '.join(SETS)} (default: every available one)")
    p.add_argument("--methods", type=_csv, default=None, help=f"quality methods, comma-separated from: {', '.join(METHODS)}")
    p.add_argument("--no-decoder", action="store_true", help="leave out the SmolLM2 PIE encoder from the quality section (saves minutes)")
    p.add_argument("--decoder-max-texts", type=int, default=None,
                   help="the decoder method skips sets with more texts than this (default 1500: bundled + ift_test; 0 = no limit)")
    p.add_argument("--ieb-dir", default=None, help="folder with IEB's eft_test.json etc. (default: $PIE_IEB_DIR, else <repo>/../shared/ieb)")
    p.add_argument("--pool", default=None, help="your pool file (JSONL/JSON/IEB); evaluated leave-one-out on its task labels")
    p.add_argument("--label-field", default=None, help="the field of --pool holding the task label (top-level or metadata key)")
    p.add_argument("--icl-queries", type=int, default=None, help="cap on ICL queries, spread over tasks (default: all 59 short-answer queries)")
    p.add_argument("--icl-k", type=int, default=4, help="demonstrations per ICL prompt (default: %(default)s)")
    p.add_argument("--icl-backend", default="transformers", choices=["transformers", "vllm"], help="LLM backend (default: %(default)s)")
    p.add_argument("--icl-model", default="smollm2", help="LLM: 'smollm2' (packaged SmolLM2-135M-Instruct) or a local folder")
    p.add_argument("--icl-conditions", type=_csv, default=None, help=f"comma-separated from: {', '.join(ICL_CONDITIONS)}")
    p.add_argument("--sizes", type=_sizes, default=None, help="speed pool sizes, e.g. 1k,10k,100k (default)")
    p.add_argument("--encode-limit", type=int, default=None, help="largest pool encoded for real; larger ones reuse perturbed vectors (default 10000)")
    p.add_argument("--threads", default="auto",
                   help="torch/faiss threads: a number, 'default' (torch's choice) or 'auto' (default: 1 thread when the "
                        "load average exceeds the core count, where 2 threads mostly wait for each other; else torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="results", help="where <name>.json and <name>.png go (default: %(default)s)")
    p.add_argument("--readme", default=None, help="also render the tables into this README between <!-- bench:start/end --> markers")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_from_args(args: argparse.Namespace):
    from .bench import FULL_METHODS, QUICK_METHODS, BenchConfig

    overrides = {
        "name": args.name, "sets": args.sets, "ieb_dir": args.ieb_dir, "pool": args.pool, "label_field": args.label_field,
        "icl_queries": args.icl_queries, "icl_k": args.icl_k, "icl_backend": args.icl_backend, "icl_model": args.icl_model,
        "icl_conditions": args.icl_conditions, "sizes": args.sizes, "encode_limit": args.encode_limit,
        "threads": None if args.threads == "default" else args.threads, "seed": args.seed, "out_dir": args.out_dir,
        "show_progress": False if args.no_progress else None,
    }
    if args.pool and not args.sets:
        overrides["sets"] = ("user",)
    sections = args.sections or (("quality",) if args.pool else None)
    if sections:
        overrides["sections"] = sections
    methods = args.methods or (QUICK_METHODS if args.quick else FULL_METHODS)
    if args.no_decoder:
        methods = tuple(m for m in methods if m != "smollm2-pie")
    overrides["methods"] = methods
    overrides = {k: v for k, v in overrides.items() if v is not None or k == "threads"}
    if args.decoder_max_texts is not None:
        overrides["decoder_max_texts"] = args.decoder_max_texts or None
    if args.quick:
        return BenchConfig.quick_preset(**overrides)
    return BenchConfig(**overrides)


def run(args: argparse.Namespace) -> int:
    from .bench import plot_results, render_markdown, run_benchmark, save_results, update_readme

    cfg = config_from_args(args)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    log(f"sections {', '.join(cfg.sections)} → {cfg.out_dir}/{cfg.name}.json")
    partial = Path(cfg.out_dir) / f".{cfg.name}.partial.json"

    def checkpoint(results: dict) -> None:
        save_results(results, partial.parent, partial.stem)

    results = run_benchmark(cfg, log=log, on_section=checkpoint)
    partial.unlink(missing_ok=True)
    png = None
    if not args.no_chart:
        try:
            png = plot_results(results, Path(cfg.out_dir) / f"{cfg.name}.png")
        except ImportError:
            log("matplotlib is not installed; no chart (pip install 'pie-retriever[bench]')")
    path = save_results(results, cfg.out_dir, cfg.name)
    md = render_markdown(results, json_path=str(path), png_path=str(png) if png else None)
    print(md)
    if args.readme:
        import os

        base = Path(args.readme).resolve().parent
        rel = lambda p: os.path.relpath(Path(p).resolve(), base)  # noqa: E731
        md = render_markdown(results, json_path=rel(path), png_path=rel(png) if png else None)
        changed = update_readme(args.readme, md)
        log(f"{args.readme}: bench section {'updated' if changed else 'unchanged'}")
    log(f"done in {results['wall_s']:.0f}s → {path}" + (f", {png}" if png else ""))
    return 0
