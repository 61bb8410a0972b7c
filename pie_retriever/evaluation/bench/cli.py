"""`pie-retriever bench`: quality, in-context learning, speed and memory vs BM25 → results/<name>.json.

Examples::

    pie-retriever bench --data ../ieb                # the full benchmark (IEB folder from --data or $PIE_IEB_DIR)
    pie-retriever bench --quick                      # ~1-minute smoke run → results/bench-quick.json
    pie-retriever bench --pool my_pool.jsonl --label-field task   # task-match quality on your pool (LOO)
    pie-retriever bench --sections speed --sizes 1000,10000       # only speed, two sizes

Without an IEB folder the IEB sets are skipped (with a note in the JSON). The README tables and the chart are
rendered from the JSON by `python benchmarks/render_readme.py` in a source checkout (`python benchmarks/run.py`
runs the benchmark and renders in one go).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


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
    from pie_retriever.evaluation.bench.config import ICL_CONDITIONS, METHODS, SECTIONS, SETS

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
    p.add_argument("--data", "--ieb-dir", dest="ieb_dir", default=None, metavar="DIR",
                   help="IEB folder with eft_test.json etc. (default: $PIE_IEB_DIR; without either the IEB sets are skipped)")
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
    p.add_argument("--out-dir", default="results", help="where <name>.json goes (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing <out-dir>/<name>.json (in the checkout: the shipped results); without it "
                        "the run stops before it starts")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def config_from_args(args: argparse.Namespace):
    """The :class:`~pie_retriever.evaluation.bench.config.BenchConfig` of parsed ``bench`` arguments."""
    from pie_retriever.evaluation.bench.config import FULL_METHODS, QUICK_METHODS, BenchConfig
    from pie_retriever.evaluation.ieb import resolve_ieb_dir

    # a named IEB folder that does not exist is an error up front; so is no folder when IEB sets are asked for by name
    resolve_ieb_dir(args.ieb_dir, required=bool(args.sets and any(s.startswith("ieb-") for s in args.sets)))
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


def execute(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """Run the benchmark of parsed ``bench`` arguments and write its JSON; returns ``(results, json path)``.

    Results are checkpointed after each section into ``<out_dir>/.<name>.partial.json`` (removed at the end).
    """
    from pie_retriever._util import check_output_target
    from pie_retriever.evaluation.bench.runner import run_benchmark, save_results

    cfg = config_from_args(args)
    check_output_target(Path(cfg.out_dir) / f"{cfg.name}.json", force=bool(getattr(args, "force", False)),
                        flag="--out-dir/--name")  # before minutes of work, not after
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[bench {time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    log(f"sections {', '.join(cfg.sections)} → {cfg.out_dir}/{cfg.name}.json")
    partial = Path(cfg.out_dir) / f".{cfg.name}.partial.json"
    results = run_benchmark(cfg, log=log, on_section=lambda r: save_results(r, partial.parent, partial.stem))
    partial.unlink(missing_ok=True)
    path = save_results(results, cfg.out_dir, cfg.name)
    log(f"done in {results['wall_s']:.0f}s → {path}")
    return results, path


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def summary(results: dict[str, Any]) -> str:
    """A few plain lines per section (the full tables are rendered by ``benchmarks/render_readme.py``)."""
    lines: list[str] = []
    q = results.get("quality")
    for key, s in (q or {}).get("sets", {}).items():
        lines.append(f"quality {key} ({s['n_queries']:,} queries, {s['protocol']}): P@4")
        for name, r in s["results"].items():
            delta = r.get("p@4_minus_bm25")
            extra = f"  Δ vs BM25 {delta['diff']:+.3f} [{delta['lo']:+.3f}, {delta['hi']:+.3f}]" if delta else ""
            lines.append(f"  {q['methods'][name]['label']}: {_fmt(r.get('p@4')) if 'p@4' in r else r.get('skipped') or r.get('error')}{extra}")
    for name, cond in (results.get("icl") or {}).get("conditions", {}).items():
        lines.append(f"icl {results['icl'].get('labels', {}).get(name, name)}: exact match {_fmt(cond.get('score'))}")
    for row in (results.get("speed") or {}).get("per_size", []):
        p, b = row["pie"], row["bm25"]
        lines.append(f"speed {row['n']:,} demos: single query p50 PIE {p['single']['p50_ms']:.1f} ms, BM25 {b['single']['p50_ms']:.1f} ms")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    results, path = execute(args)
    print(summary(results))
    print(f"\nwrote {path}; render tables and chart with: python benchmarks/render_readme.py --results {path} --chart --print")
    return 0
