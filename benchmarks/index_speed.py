"""Index speed: batched exact search per vector storage (fp32 / fp16 / int8), the per-query vs block crossover, and
filtered vs unfiltered single-query retrieve. Before/after figures of one change are kept side by side.

    python benchmarks/index_speed.py --label before     # run every section, store it as "before"
    python benchmarks/index_speed.py --label after      # same, as "after"; rewrites the table in docs/speed.md
    python benchmarks/index_speed.py --render           # only rewrite docs/speed.md from results/index_speed.json

Vectors: the default model's vectors of 10,000 pool texts (the same cache as benchmarks/speed_onnx.py) and 1,000
query vectors; the 100,000 pool is perturbed copies of them (noise 0.05). Each label's figures come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pie_retriever.evaluation.bench.load import load_average  # noqa: E402
from pie_retriever.evaluation.bench.runner import machine_info  # noqa: E402

DOC = ROOT / "docs" / "speed.md"
START, END = "<!-- index-speed:start -->", "<!-- index-speed:end -->"
SECTIONS = ("storage", "crossover", "filters")


def _vectors(args: argparse.Namespace) -> tuple[Any, np.ndarray, np.ndarray]:
    """(encoder, 10k document vectors, query vectors), cached between runs."""
    from speed_onnx import cached_vectors, texts_and_queries

    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.bench.speed import synthetic_texts

    ieb = Path(os.environ.get("PIE_IEB_DIR", ROOT.parent / "shared" / "ieb"))  # as benchmarks/speed_onnx.py reads it
    base, queries = texts_and_queries(ieb if ieb.is_dir() else None, args.seed)
    enc = TransformerEncoder(DEFAULT_MODEL)
    texts = synthetic_texts(base, 10_000)
    docs = cached_vectors(f"pool|{enc.fingerprint}|{len(texts)}|{args.seed}|{texts[0]}|{texts[-1]}",
                          lambda: enc.encode_documents(texts, show_progress=False))
    qs = queries[: args.queries]
    qv = cached_vectors(f"queries|{enc.fingerprint}|{len(qs)}|{qs[0]}|{qs[-1]}", lambda: enc.encode_queries(qs, show_progress=False))
    return enc, docs, qv


def _pool(docs: np.ndarray, n: int, seed: int) -> np.ndarray:
    from pie_retriever.evaluation.bench.speed import perturbed_copies

    return docs[:n] if n <= len(docs) else perturbed_copies(docs, n, seed=seed)


def storage_section(args: argparse.Namespace, docs: np.ndarray, qv: np.ndarray) -> dict[str, Any]:
    from pie_retriever.evaluation.bench.storage import storage_rows

    out = {}
    for n in args.storage_sizes:
        rows = storage_rows(_pool(docs, n, args.seed), qv, kinds=("flat",), n_single=args.n_single)
        out[str(n)] = {"rows": rows, "load": load_average()}
        for row in rows:
            print(f"  storage {n:,} {row['kind']} {row['vectors']}: {row['batched_queries_per_s']:,.0f} q/s, "
                  f"recall@4 {row['recall_at_4']:.4f}, single p50 {row['single']['p50_ms']:.3f} ms", flush=True)
    return out


def crossover_section(args: argparse.Namespace, docs: np.ndarray, qv: np.ndarray) -> dict[str, Any]:
    """ms per query of fp16 flat search by batch size, through ``search`` as it chooses (and fp32 for reference)."""
    from pie_retriever.index import create_index

    out: dict[str, Any] = {}
    for n in args.storage_sizes:
        vectors = _pool(docs, n, args.seed)
        rows = []
        for storage in ("fp32", "fp16", "int8"):
            index = create_index(vectors.shape[1], "flat", vectors=storage)
            index.add(np.arange(n, dtype=np.int64), vectors)
            paths = {"scan": 2**62, "block": 1} if storage != "fp32" else {"scan": 2**62}
            for path, threshold in paths.items():
                index.block_min_queries = threshold
                for b in args.batches:
                    q = np.ascontiguousarray(np.resize(qv, (b, qv.shape[1])), dtype=np.float32)
                    best = float("inf")
                    for _ in range(3):
                        t0 = time.perf_counter()
                        index.search(q, 4)
                        best = min(best, time.perf_counter() - t0)
                    rows.append({"vectors": storage, "path": path, "batch": b, "ms_per_query": 1000 * best / b})
        out[str(n)] = rows
        print(f"  crossover {n:,}: " + ", ".join(f"{r['vectors']} {r['path']} b{r['batch']} {r['ms_per_query']:.3f}" for r in rows), flush=True)
    return out


def filters_section(args: argparse.Namespace, enc: Any, docs: np.ndarray, qv: np.ndarray) -> dict[str, Any]:
    from pie_retriever.evaluation.bench.filtering import filter_rows

    out = {}
    for n in args.filter_sizes:
        got = filter_rows(enc, _pool(docs, n, args.seed), qv, n_queries=args.filter_queries)
        out[str(n)] = got
        print(f"  filters {n:,}: " + ", ".join(f"{k} {v['p50_ms']:.3f} ms ({v['ratio_to_unfiltered']:.1f}×)" for k, v in got["rows"].items()),
              flush=True)
    return out


def render(results: dict[str, Any]) -> str:
    labels = [x for x in ("before", "after") if x in results.get("runs", {})]
    runs = {x: results["runs"][x] for x in labels}
    lines = ["Measured by `python benchmarks/index_speed.py --label before|after` (results/index_speed.json); "
             + "; ".join(f"{x}: {r['created']} on {r['machine']['cpu']}, load {r['load_start'][0]}" for x, r in runs.items()) + ".", ""]
    for x, run in runs.items():
        if "storage" not in run:
            continue
        lines += [f"Batched exact search ({x} run; flat, 1,000 queries in one `search` call, k = 4, best of 3), queries/s: faiss' "
                  "own scan (the path before block search) and the block path, timed alternately on the same index; recall@4 "
                  "against exact fp32 search by each path; the 100,000 pool is perturbed copies of the 10,000 real vectors.", "",
                  "| pool | vectors | q/s faiss scan (before) | × fp32 | recall@4 | q/s block path (after) | × fp32 | recall@4 |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for size, block in run["storage"].items():
            fp32 = next(r for r in block["rows"] if r["vectors"] == "fp32")
            for r in block["rows"]:
                scan = r.get("batched_queries_per_s_faiss_scan") or r["batched_queries_per_s"]
                scan_recall = r.get("recall_at_4_faiss_scan") or r["recall_at_4"]
                lines.append(f"| {int(size):,} | {r['vectors']} | {scan:,.0f} | {scan / fp32['batched_queries_per_s']:.2f}× | "
                             f"{scan_recall:.4f} | {r['batched_queries_per_s']:,.0f} | "
                             f"{r['batched_queries_per_s'] / fp32['batched_queries_per_s']:.2f}× | {r['recall_at_4']:.4f} |")
        lines.append("")
    for x, run in runs.items():
        if "crossover" not in run:
            continue
        lines += [f"ms per query by batch size ({x} run; flat, best of 3; the block path starts at `BLOCK_MIN_QUERIES`):", "",
                  "| pool | vectors, path | " + " | ".join(str(b) for b in run["config"]["batches"]) + " |",
                  "|---:|---|" + "---:|" * len(run["config"]["batches"])]
        for size, rows in run["crossover"].items():
            for storage, path in dict.fromkeys((r["vectors"], r.get("path", "scan")) for r in rows):
                cells = [f"{r['ms_per_query']:.3f}" for r in rows if (r["vectors"], r.get("path", "scan")) == (storage, path)]
                lines.append(f"| {int(size):,} | {storage}, {'faiss scan' if path == 'scan' else 'block path'} | " + " | ".join(cells) + " |")
        lines.append("")
    if all("filters" in r for r in runs.values()):
        lines += ["Single-query `retrieve(q, k=4, filter=...)` p50 ms over a flat fp16 index (query vectors replayed: search and "
                  "filter cost only), and its ratio to the unfiltered p50 of the same run.", "",
                  "| pool | filter | " + " | ".join(f"p50 ms {x} | × unfiltered {x}" for x in labels) + " |",
                  "|---:|---|" + "---:|---:|" * len(labels)]
        for size, block in runs[labels[0]]["filters"].items():
            for name in block["rows"]:
                cells = [f"{runs[x]['filters'][size]['rows'][name]['p50_ms']:.3f} | {runs[x]['filters'][size]['rows'][name]['ratio_to_unfiltered']:.1f}×"
                         for x in labels]
                lines.append(f"| {int(size):,} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def update_doc(results: dict[str, Any]) -> None:
    text = DOC.read_text(encoding="utf-8")
    if START not in text:
        return
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", default="after", help="name of this run (before / after)")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--storage-sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--filter-sizes", type=int, nargs="+", default=[5_000, 20_000])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 256, 1000])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--filter-queries", type=int, default=200)
    p.add_argument("--n-single", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", action="store_true")
    p.add_argument("--out", default=str(ROOT / "results" / "index_speed.json"))
    args = p.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"name": "index_speed", "runs": {}}
    if not args.render:
        enc, docs, qv = _vectors(args)
        run: dict[str, Any] = {"created": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(),
                               "load_start": load_average(), "config": vars(args)}
        for section in args.sections:
            print(section, flush=True)
            if section == "storage":
                run["storage"] = storage_section(args, docs, qv)
            elif section == "crossover":
                run["crossover"] = crossover_section(args, docs, qv)
            else:
                run["filters"] = filters_section(args, enc, docs, qv)
        results["runs"][args.label] = {**results["runs"].get(args.label, {}), **run}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"wrote {out}")
    update_doc(results)
    print(render(results))


if __name__ == "__main__":
    main()
