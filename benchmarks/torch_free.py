"""Torch-free queries for torch-built indexes (issue 30.1): cold CLI start and single-query latency, in one run.

    python benchmarks/torch_free.py                  # -> results/torch_free.json, prints the tables
    python benchmarks/torch_free.py --repeats 3 --pool 2000   # quicker

1. **Cold start**: ``pie-retriever search INDEX "query" -k 4`` as a whole process (wall clock, median of
   ``--repeats``), idle and under a CPU hog of ``--hog`` busy-loop processes, for three indexes of the bundled pool:
   built with the default torch model and loaded through the fp32 ONNX path (``PIE_ENCODER_RUNTIME`` unset: auto),
   the same index with torch forced (``PIE_ENCODER_RUNTIME=torch``), and an index built with the int8 alias
   (``<default>-onnx``). The fp32 export is built before timing (once per fingerprint, into the cache).
2. **Single query**: ``retrieve(q, k=4)`` p50 over a ``--pool`` (default 10,000) instruction pool built with the
   default model and loaded through the new path, and bm25s' p50 on the same pool and queries, in the same run;
   the ratio is the figure (absolute milliseconds move with the machine).

Pool texts and queries are those of the other speed benchmarks (``evaluation.bench.speed.speed_texts``: IEB
instructions from ``$PIE_IEB_DIR`` as texts, the bundled queries then ift_test as queries); only timings are taken,
nothing is chosen on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pie_retriever.evaluation.bench.load import cpu_hog, load_average  # noqa: E402
from pie_retriever.evaluation.bench.runner import machine_info  # noqa: E402

QUERY = "Write a limerick about tax law."


def _cli(index: Path, runtime: str | None) -> tuple[float, bool]:
    """Wall seconds of one ``pie-retriever search`` process, and whether torch was imported (``-X importtime``)."""
    env = {k: v for k, v in os.environ.items() if k != "PIE_ENCODER_RUNTIME"}
    if runtime:
        env["PIE_ENCODER_RUNTIME"] = runtime
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pie_retriever.cli", "search", str(index), QUERY, "-k", "4"],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    wall = time.perf_counter() - t0
    return wall, any(line.rstrip().endswith("| torch") for line in done.stderr.splitlines())


def cold_start(indexes: dict[str, tuple[Path, str | None]], repeats: int, hog: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for state in ("idle", "loaded"):
        rows: dict[str, Any] = {}
        with cpu_hog(hog if state == "loaded" else 0, max_seconds=900):
            load = load_average()
            for name, (index, runtime) in indexes.items():
                runs = [_cli(index, runtime) for _ in range(repeats)]
                walls = [w for w, _ in runs]
                rows[name] = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                              "torch_imported": runs[0][1], "repeats": repeats}
                print(f"  cold {state:6s} {name}: {rows[name]['median_s']:.2f} s (torch: {runs[0][1]})", flush=True)
        out[state] = {"load_start": load, "rows": rows}
    return out


def single_query(pool_size: int, n_queries: int, ieb: Path | None, tmp: Path) -> dict[str, Any]:
    import numpy as np

    from pie_retriever import PIERetriever
    from pie_retriever.evaluation.bench.speed import speed_texts
    from pie_retriever.retrieval.bm25 import BM25Retriever

    base, queries, _ = speed_texts(ieb, 0)
    texts = (base * (pool_size // len(base) + 1))[:pool_size]
    pool = [{"id": f"d{i}", "instruction": t} for i, t in enumerate(texts)]
    PIERetriever.from_demonstrations(pool, show_progress=True).save(tmp / "big.pie")  # the default model, torch
    pie = PIERetriever.load(tmp / "big.pie", encoder_runtime="onnx")
    bm25 = BM25Retriever(pool)
    qs = queries[:n_queries]
    for q in qs[:5]:  # warm both
        pie.retrieve(q, k=4)
        bm25.retrieve(q, k=4)
    times: dict[str, list[float]] = {"pie (torch-built, onnx path)": [], "bm25s": []}
    for q in qs:  # interleaved, so both see the same machine
        for name, r in (("pie (torch-built, onnx path)", pie), ("bm25s", bm25)):
            t0 = time.perf_counter()
            r.retrieve(q, k=4)
            times[name].append(time.perf_counter() - t0)
    p50 = {name: float(np.median(v)) * 1000 for name, v in times.items()}
    ratio = p50["pie (torch-built, onnx path)"] / p50["bm25s"]
    print(f"  single query over {pool_size:,}: pie {p50['pie (torch-built, onnx path)']:.2f} ms, bm25s {p50['bm25s']:.2f} ms, "
          f"ratio {ratio:.1f}x", flush=True)
    return {"pool": pool_size, "queries": len(qs), "p50_ms": p50, "ratio_to_bm25s": ratio, "encoder": type(pie.encoder).__name__}


def build_indexes(tmp: Path) -> dict[str, tuple[Path, str | None]]:
    from pie_retriever import PIERetriever
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.pool.pools import load_bundled_pool

    pool = load_bundled_pool()
    torch_built = PIERetriever.from_demonstrations(pool).save(tmp / "default.pie")
    PIERetriever.load(torch_built, encoder_runtime="onnx")  # builds the fp32 export once, before any timing
    int8 = PIERetriever.from_demonstrations(pool, f"{DEFAULT_MODEL}-onnx").save(tmp / "int8.pie")
    return {f"{DEFAULT_MODEL} index, fp32 ONNX path (auto)": (torch_built, None),
            f"{DEFAULT_MODEL} index, torch forced": (torch_built, "torch"),
            f"{DEFAULT_MODEL}-onnx index (int8)": (int8, None)}


def render(res: dict[str, Any]) -> str:
    lines = [f"Measured by `python benchmarks/torch_free.py` ({res['created']}, {res['machine'].get('cpu')}); "
             "whole-process wall of `pie-retriever search INDEX QUERY -k 4`, median of "
             f"{res['repeats']} (min–max); loaded = {res['hog']} busy-loop processes on the 2 cores.", "",
             "| index, query path | idle | loaded | torch imported |", "|---|---:|---:|---|"]
    cold = res["cold"]
    for name, idle in cold["idle"]["rows"].items():
        busy = cold["loaded"]["rows"][name]
        lines.append(f"| {name} | {idle['median_s']:.2f} s ({idle['min_s']:.2f}–{idle['max_s']:.2f}) | "
                     f"{busy['median_s']:.2f} s ({busy['min_s']:.2f}–{busy['max_s']:.2f}) | {'yes' if idle['torch_imported'] else 'no'} |")
    sq = res["single"]
    lines += ["", f"Single-query `retrieve(q, k=4)` p50 over {sq['pool']:,} instructions ({sq['queries']} queries, interleaved): "
              f"torch-built default index through the ONNX path {sq['p50_ms']['pie (torch-built, onnx path)']:.2f} ms, "
              f"bm25s {sq['p50_ms']['bm25s']:.2f} ms: **{sq['ratio_to_bm25s']:.1f}× bm25s**."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hog", type=int, default=2)
    p.add_argument("--pool", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--out", default=str(ROOT / "results" / "torch_free.json"))
    args = p.parse_args()
    ieb_env = os.environ.get("PIE_IEB_DIR")
    ieb = Path(ieb_env) if ieb_env else ROOT.parent / "shared" / "ieb"
    with tempfile.TemporaryDirectory(prefix="pie-torch-free-") as tmp:
        indexes = build_indexes(Path(tmp))
        res: dict[str, Any] = {"created": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(),
                               "repeats": args.repeats, "hog": args.hog}
        res["cold"] = cold_start(indexes, args.repeats, args.hog)
        res["single"] = single_query(args.pool, args.queries, ieb if ieb.is_dir() else None, Path(tmp))
    Path(args.out).write_text(json.dumps(res, indent=2), encoding="utf-8")
    print(render(res))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
