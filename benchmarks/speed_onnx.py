"""Query-path speed: torch vs ONNX (fp32, int8), threads, idle vs loaded machine, cold start, vector storage.

    python benchmarks/speed_onnx.py                 # full run (~15 min on 2 cores) -> results/speed_onnx.json
    python benchmarks/speed_onnx.py --quick         # smaller everything (~4 min), for a smoke run
    python benchmarks/speed_onnx.py --render        # rewrite the tables of docs/speed.md from the JSON

Every figure of one run is measured in that run, idle and then under a CPU hog (``--hog`` busy-loop processes),
so ratios between rows are comparable even on a shared machine; the load average is recorded next to each block.
IEB files come from ``$PIE_IEB_DIR`` (default ../shared/ieb); eft_test is used for evaluation only (P@4 of each
backend), never to choose anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pie_retriever.evaluation.bench.load import cpu_hog, load_average  # noqa: E402
from pie_retriever.evaluation.bench.runner import machine_info, save_results  # noqa: E402

DOC = ROOT / "docs" / "speed.md"
START, END = "<!-- speed:start -->", "<!-- speed:end -->"


def cached_vectors(key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Document vectors stored under the cache folder by ``key`` (encoder fingerprint, texts, backend), so a rerun
    of the benchmark at a quieter moment does not spend its time re-encoding the same texts."""
    import hashlib

    from pie_retriever.encoders.onnx_export import cache_dir

    path = cache_dir() / "bench-vectors" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"
    if path.is_file():
        return np.load(path)
    v = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, v)
    return v


# -- encoders under test ---------------------------------------------------------------------------
#: The library default's row: fp32 on every CPU, 1 thread for one query, every core for a batch.
_DEFAULT_ROW = "torch default (fp32; 1 thread for one query, all cores for batches)"
#: The opt-in bf16 policy (the default of the past on CPUs with native bf16): bf16 autocast for calls of > 2 texts.
_BF16_ROW = "torch bf16 opt-in (1 thread + fp32 for one query; all cores + bf16 for batches)"


def make_backends(model: str) -> dict[str, Callable[[], Any]]:
    """name -> a function that configures and returns the encoder for that row (encoders are shared between rows)."""
    from pie_retriever.encoders.onnx import OnnxEncoder
    from pie_retriever.encoders.onnx_export import cached_export
    from pie_retriever.encoders.transformer import TransformerEncoder

    torch_enc = TransformerEncoder(model)
    onnx = {q: OnnxEncoder(cached_export(model, q)) for q in ("none", "int8")}

    def torch_row(precision: str, threads: int | None, fp32_max: int) -> Callable[[], Any]:
        def get() -> Any:
            torch_enc.precision, torch_enc.threads, torch_enc.fp32_max_texts = precision, threads, fp32_max
            return torch_enc
        return get

    def onnx_row(q: str, threads: int | None) -> Callable[[], Any]:
        def get() -> Any:
            onnx[q].threads = threads
            return onnx[q]
        return get

    return {
        "torch bf16 (old default: bf16 always, torch default threads)": torch_row("bf16", 2, 0),
        "torch fp32, 2 threads": torch_row("fp32", 2, 0),
        "torch fp32, 1 thread": torch_row("fp32", 1, 0),
        _DEFAULT_ROW: torch_row("fp32", None, 2),
        _BF16_ROW: torch_row("bf16", None, 2),
        "onnx fp32, 2 threads": onnx_row("none", 2),
        "onnx fp32, 1 thread": onnx_row("none", 1),
        "onnx int8, 2 threads": onnx_row("int8", 2),
        "onnx int8, 1 thread": onnx_row("int8", 1),
        "onnx int8, policy (1 thread for one query, all cores for batches)": onnx_row("int8", None),
    }


def latency(fn: Callable[[str], Any], queries: list[str], budget_s: float) -> dict[str, float]:
    """p50/p99 ms of ``fn(q)`` one query at a time, stopping early once ``budget_s`` is spent (at least 10 queries)."""
    for q in queries[:2]:
        fn(q)
    times: list[float] = []
    start = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000.0)
        if len(times) >= 10 and time.perf_counter() - start > budget_s:
            break
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "n": len(times)}


def throughput(enc: Any, texts: list[str]) -> float:
    t0 = time.perf_counter()
    enc.encode_documents(texts, show_progress=False)
    return len(texts) / (time.perf_counter() - t0)


def backend_block(backends: dict[str, Callable[[], Any]], retrievers: dict[str, Any], queries: list[str], batch: list[str],
                  budget_s: float) -> dict[str, Any]:
    """Every backend row once, under the machine's current load."""
    out: dict[str, Any] = {"load_before": load_average()}
    rows = {}
    for name, get in backends.items():
        enc = get()
        r = retrievers[name]
        rows[name] = {
            "encode_single": latency(lambda q, enc=enc: enc.encode_queries([q]), queries, budget_s),
            "retrieve_single": latency(lambda q, r=r: r.retrieve(q, k=4), queries, budget_s),
            "batch_texts_per_s": throughput(enc, batch),
        }
        print(f"  {name}: retrieve p50 {rows[name]['retrieve_single']['p50_ms']:.2f} ms, "
              f"batch {rows[name]['batch_texts_per_s']:.0f}/s", flush=True)
    out["rows"] = rows
    out["load_after"] = load_average()
    return out


def precision_crossover(backends: dict[str, Callable[[], Any]], texts: list[str], sizes=(1, 2, 4, 8, 16, 32, 64), rounds: int = 3) -> dict[str, Any]:
    """ms per call of fp32 vs bf16 autocast (torch, 2 threads) by call size, interleaved, best of ``rounds``:
    where bf16 starts to pay off (the ``fp32_max_texts`` default)."""
    enc = backends["torch fp32, 2 threads"]()
    out: dict[str, Any] = {"load_before": load_average(), "rows": []}
    for n in sizes:
        best = {"fp32": float("inf"), "bf16": float("inf")}
        chunk = texts[:n]
        for _ in range(rounds):
            for precision in best:
                enc.precision = precision
                t0 = time.perf_counter()
                enc.encode_documents(chunk, show_progress=False)
                best[precision] = min(best[precision], (time.perf_counter() - t0) * 1000.0)
        out["rows"].append({"texts": n, "fp32_ms": best["fp32"], "bf16_ms": best["bf16"]})
        print(f"  {n} texts: fp32 {best['fp32']:.1f} ms, bf16 {best['bf16']:.1f} ms", flush=True)
    enc.precision = "fp32"
    out["load_after"] = load_average()
    return out


# -- quality: eft_test P@4 (evaluation only) --------------------------------------------------------
def p_at_4(vectors: np.ndarray, labels: list[str]) -> float:
    """Leave-one-out P@4: share of each sample's 4 nearest others (cosine) with its task label."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, 4, axis=1)[:, :4]
    lab = np.asarray(labels)
    return float((lab[top] == lab[:, None]).mean())


def quality(backends: dict[str, Callable[[], Any]], ieb: Path) -> dict[str, Any]:
    from pie_retriever.pool.ieb import EFT_TEST, load_labelled

    texts, labels = load_labelled(ieb / EFT_TEST)[:2]
    out: dict[str, Any] = {"set": "IEB eft_test, leave-one-out", "n": len(texts)}
    ref = None
    for name in (_DEFAULT_ROW, _BF16_ROW,
                 "onnx fp32, 2 threads", "onnx int8, 2 threads"):
        enc = backends[name]()
        v = cached_vectors(f"{name}|{enc.fingerprint}|eft_test|{len(texts)}|{texts[0]}|{texts[-1]}",
                           lambda enc=enc: enc.encode_documents(texts, show_progress=False))
        if ref is None:
            ref = v
        out[name] = {"p_at_4": p_at_4(v, labels), "cosine_to_torch_default_min": float(np.min(np.sum(v * ref, 1))),
                     "cosine_to_torch_default_mean": float(np.mean(np.sum(v * ref, 1)))}
        print(f"  P@4 {name}: {out[name]['p_at_4']:.4f}", flush=True)
    return out


# -- cold start ----------------------------------------------------------------------------------
_COLD = """
import sys, time
t0 = time.perf_counter()
from pie_retriever import PIERetriever
r = PIERetriever.load(sys.argv[1])
hits = r.retrieve("Write a short poem about the sea.", k=4)
t1 = time.perf_counter()
print({"load_and_first_result_s": t1 - t0, "torch_imported": "torch" in sys.modules, "hits": len(hits)})
"""


def cold_start(folders: dict[str, Path], repeats: int) -> dict[str, Any]:
    """``PIERetriever.load`` + the first result in a fresh interpreter: in-process seconds and whole-process wall."""
    import ast

    out = {}
    for name, folder in folders.items():
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _COLD, str(folder)], capture_output=True, text=True, check=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            got = ast.literal_eval(done.stdout.strip().splitlines()[-1])
            got["process_wall_s"] = time.perf_counter() - t0
            runs.append(got)
        out[name] = {"load_and_first_result_s": float(np.median([r["load_and_first_result_s"] for r in runs])),
                     "process_wall_s": float(np.median([r["process_wall_s"] for r in runs])),
                     "torch_imported": runs[0]["torch_imported"], "repeats": repeats}
        print(f"  cold start {name}: {out[name]['load_and_first_result_s']:.2f} s (torch imported: {out[name]['torch_imported']})", flush=True)
    return out


def cold_folders(backends: dict[str, Callable[[], Any]], tmp: Path, model: str) -> dict[str, Path]:
    from pie_retriever import PIERetriever
    from pie_retriever.pool.pools import load_bundled_pool

    pool = load_bundled_pool()
    folders = {}
    for label, name in ((f"torch ({model})", _DEFAULT_ROW),
                        (f"onnx int8 ({model}-onnx)", "onnx int8, policy (1 thread for one query, all cores for batches)")):
        retriever = PIERetriever.from_demonstrations(pool, backends[name](), show_progress=False)
        folders[label] = retriever.save(tmp / label.split()[0])
    return folders


# -- main --------------------------------------------------------------------------------------------
def texts_and_queries(ieb: Path | None, seed: int) -> tuple[list[str], list[str]]:
    from pie_retriever.evaluation.bench.speed import speed_texts

    base, queries, _ = speed_texts(ieb, seed)
    rng = np.random.default_rng(seed)
    return base, [queries[i] for i in rng.permutation(len(queries))]


SECTIONS = ("backends", "precision", "quality", "cold", "storage")


def _backends_section(args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    from pie_retriever import PIERetriever
    from pie_retriever.evaluation.bench.speed import PrecomputedEncoder

    backends, n = ctx["backends"], len(ctx["texts"])
    demos = [{"id": f"s{i}", "instruction": t} for i, t in enumerate(ctx["texts"])]
    retrievers = {name: PIERetriever.from_demonstrations(demos, PrecomputedEncoder(get(), ctx["doc_vectors"]), show_progress=False)
                  for name, get in backends.items()}
    single, batch = ctx["queries"][: args.n_single], (ctx["queries"] * 4)[: args.batch]
    print("backends, idle", flush=True)
    out = {"pool": n, "index": "flat, fp16 vectors (the default)", "hog_processes": args.hog,
           "idle": backend_block(backends, retrievers, single, batch, args.budget)}
    with cpu_hog(args.hog, max_seconds=1800):
        print(f"backends, loaded ({args.hog} busy-loop processes)", flush=True)
        out["loaded"] = backend_block(backends, retrievers, single, batch, args.budget)
    return out


def _cold_section(args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pie-cold-") as tmp:
        folders = cold_folders(ctx["backends"], Path(tmp), ctx["model"])
        print("cold start, idle", flush=True)
        out = {"idle": cold_start(folders, args.repeats), "load_idle": load_average()}
        with cpu_hog(args.hog, max_seconds=900):
            out["loaded"] = cold_start(folders, args.repeats)
            out["load_loaded"] = load_average()
    return out


def _storage_section(args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    from pie_retriever.evaluation.bench.speed import perturbed_copies, synthetic_texts
    from pie_retriever.evaluation.bench.storage import storage_rows

    doc_vectors = ctx["doc_vectors"]
    qv = ctx["backends"][_DEFAULT_ROW]().encode_queries(ctx["queries"][: args.storage_queries], show_progress=False)
    out = {}
    for size in args.sizes:
        real = size <= len(doc_vectors)
        vectors = doc_vectors[:size] if real else perturbed_copies(doc_vectors, size, seed=args.seed)
        print(f"storage options at {size:,} ({'real vectors' if real else 'perturbed copies of the real vectors'})", flush=True)
        rows = storage_rows(vectors, qv, texts=synthetic_texts(ctx["base"], size), n_single=args.n_single)
        out[str(size)] = {"rows": rows, "vectors_source": "real" if real else "perturbed copies", "load": load_average()}
        for row in rows:
            print(f"  {row['kind']} {row['vectors']}: recall@4 {row['recall_at_4']:.4f}, {row['index_file_bytes_per_vector']:.0f} B/vector, "
                  f"RSS {row.get('rss_bytes_per_demo', 0):.0f} B/demo, search p50 {row['single']['p50_ms']:.3f} ms", flush=True)
    return out


def _context(args: argparse.Namespace) -> dict[str, Any]:
    """Texts, queries, the encoders under test and the document vectors of the pool (cached between runs)."""
    from pie_retriever.evaluation.bench.speed import synthetic_texts

    ieb = Path(os.environ.get("PIE_IEB_DIR", ROOT.parent / "shared" / "ieb"))
    base, queries = texts_and_queries(ieb if ieb.is_dir() else None, args.seed)
    print("loading encoders (the ONNX exports are built once into the cache)", flush=True)
    backends = make_backends(args.model)
    default = backends[_DEFAULT_ROW]()
    texts = synthetic_texts(base, args.sizes[0])
    print(f"pool vectors: {len(texts):,} texts (torch, cached between runs)", flush=True)
    doc_vectors = cached_vectors(f"pool|{default.fingerprint}|{len(texts)}|{args.seed}|{texts[0]}|{texts[-1]}",
                                 lambda: default.encode_documents(texts, show_progress=False))
    return {"ieb": ieb, "base": base, "queries": queries, "backends": backends, "texts": texts, "doc_vectors": doc_vectors,
            "model": args.model}


def run(args: argparse.Namespace, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chosen sections; with ``previous`` (``--merge``), the other sections are kept from the earlier run."""
    ctx = _context(args)
    results: dict[str, Any] = dict(previous or {})
    results.update({"name": "speed_onnx", "created": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine_info(),
                    "config": vars(args), "model": args.model})
    results.setdefault("section_created", {})
    for section in args.sections:
        if section == "backends":
            results["backends"] = _backends_section(args, ctx)
        elif section == "precision":
            print("precision by call size (torch, 2 threads)", flush=True)
            results["precision_crossover"] = precision_crossover(ctx["backends"], ctx["base"][:64])
        elif section == "quality" and ctx["ieb"].is_dir():
            print("quality (eft_test P@4, evaluation only)", flush=True)
            results["quality"] = quality(ctx["backends"], ctx["ieb"])
        elif section == "cold":
            results["cold_start"] = _cold_section(args, ctx)
        elif section == "storage":
            results["storage"] = _storage_section(args, ctx)
        results["section_created"][section] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    results["machine"]["load_average_end"] = load_average()
    return results


# -- rendering ---------------------------------------------------------------------------------------
def _f(x: float, nd: int = 2) -> str:
    return f"{x:,.{nd}f}" if x < 100 else f"{x:,.0f}"


def _opt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def render(results: dict[str, Any]) -> str:
    b = results["backends"]
    lines = [f"Measured {results['created']} on {results['machine']['cpu_count']} × {results['machine']['cpu']} "
             f"(`python benchmarks/speed_onnx.py`, results/speed_onnx.json). Load average (1 min) idle block "
             f"{b['idle']['load_before'][0]}→{b['idle']['load_after'][0]}, loaded block {b['loaded']['load_before'][0]}→"
             f"{b['loaded']['load_after'][0]} (with {b['hog_processes']} busy-loop processes of ours).", "",
             f"Single-query retrieve = encode + exact search over {b['pool']:,} demonstrations ({b['index']}), k = 4; "
             "batch = texts/s of one `encode_documents` call.", ""]
    if results.get("section_created"):
        lines += ["Sections measured at: " + ", ".join(f"{k} {v}" for k, v in results["section_created"].items()) + ".", ""]
    lines += ["| backend, precision, threads | encode p50 / p99 ms idle | retrieve p50 / p99 ms idle | retrieve p50 / p99 ms loaded | "
             "batch texts/s idle | batch texts/s loaded | eft_test P@4 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    q = results.get("quality", {})
    for name, idle in b["idle"]["rows"].items():
        loaded = b["loaded"]["rows"][name]
        p4 = q.get(name, {}).get("p_at_4")
        lines.append(f"| {name} | {_f(idle['encode_single']['p50_ms'])} / {_f(idle['encode_single']['p99_ms'])} | "
                     f"{_f(idle['retrieve_single']['p50_ms'])} / {_f(idle['retrieve_single']['p99_ms'])} | "
                     f"{_f(loaded['retrieve_single']['p50_ms'])} / {_f(loaded['retrieve_single']['p99_ms'])} | "
                     f"{idle['batch_texts_per_s']:,.0f} | {loaded['batch_texts_per_s']:,.0f} | {'' if p4 is None else f'{p4:.3f}'} |")
    lines.append("")
    if q:
        lines.append(f"P@4: {q['set']} ({q['n']:,} queries), documents encoded by each backend itself (batches).")
        lines.append("")
    pc = results.get("precision_crossover")
    if pc:
        lines += [f"torch fp32 vs bf16 autocast by call size (2 threads, best of 3, load {pc['load_before'][0]}→{pc['load_after'][0]}): "
                  + ", ".join(f"{r['texts']} text{'s' * (r['texts'] > 1)} {r['fp32_ms']:.1f} vs {r['bf16_ms']:.1f} ms" for r in pc["rows"]) + ".", ""]
    cs = results["cold_start"]
    lines += ["Cold start: a fresh `python -c` that imports pie_retriever, runs `PIERetriever.load` on a saved 249-demonstration "
              f"index and gets the first result (median of {next(iter(cs['idle'].values()))['repeats']}; in-process seconds, whole "
              "process wall in brackets).", "",
              "| index built with | idle | loaded | imports torch |", "|---|---:|---:|---|"]
    for name, idle in cs["idle"].items():
        loaded = cs["loaded"][name]
        lines.append(f"| {name} | {idle['load_and_first_result_s']:.2f} s ({idle['process_wall_s']:.2f} s) | "
                     f"{loaded['load_and_first_result_s']:.2f} s ({loaded['process_wall_s']:.2f} s) | {'yes' if idle['torch_imported'] else 'no'} |")
    lines += ["", "Vector storage (`index_options={\"vectors\": ...}`): recall@4 of a batched search against exact fp32 search, "
              "bytes per vector in `index.faiss`, resident memory a whole retriever keeps per demonstration (texts and "
              "bookkeeping included, built in a fresh process), single-query search alone.", "",
              "| pool | index | vectors | recall@4 | recall@4, ties ≤ 1e-4 | B/vector (file) | RSS B/demo | search p50 ms | batched q/s |",
              "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for size, block in results["storage"].items():
        for row in block["rows"]:
            lines.append(f"| {int(size):,}{'*' if block['vectors_source'] != 'real' else ''} | {row['kind']} | {row['vectors']} | "
                         f"{row['recall_at_4']:.4f} | {_opt(row.get('recall_at_4_with_ties'))} | {row['index_file_bytes_per_vector']:,.0f} | {row.get('rss_bytes_per_demo', 0):,.0f} | "
                         f"{row['single']['p50_ms']:.3f} | {row['batched_queries_per_s']:,.0f} |")
    lines += ["", "\\* perturbed copies of the real vectors (noise 0.05; near-duplicates make recall harder). “ties ≤ 1e-4”: a "
              "found demonstration whose exact cosine is within 1e-4 of the true 4th neighbour's counts as found (near-duplicate "
              "pool entries whose order is decided by rounding).", ""]
    return "\n".join(lines)


def update_doc(results: dict[str, Any]) -> None:
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model alias (default: the library default, DEFAULT_MODEL)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--n-single", type=int, default=100)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--budget", type=float, default=20.0, help="seconds per single-query latency measurement at most")
    p.add_argument("--hog", type=int, default=2, help="busy-loop processes for the loaded measurements")
    p.add_argument("--repeats", type=int, default=3, help="cold-start runs per index (median)")
    p.add_argument("--storage-queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2k/20k pools, 30 single queries, 128-text batch")
    p.add_argument("--render", action="store_true", help="only rewrite docs/speed.md from results/speed_onnx.json")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS, help="parts to run (default: all)")
    p.add_argument("--merge", action="store_true", help="keep the other sections of the existing results/speed_onnx.json")
    p.add_argument("--out", default=str(ROOT / "results"))
    args = p.parse_args()
    if args.render:
        update_doc(json.loads((Path(args.out) / "speed_onnx.json").read_text()))
        return
    if args.model is None:
        from pie_retriever.encoders.models import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    if args.quick:
        args.sizes, args.n_single, args.batch, args.repeats, args.storage_queries = [2_000, 20_000], 30, 128, 1, 200
    warnings.filterwarnings("ignore", message=".*longer than max_length.*")
    previous = None
    if args.merge and (Path(args.out) / "speed_onnx.json").is_file():
        previous = json.loads((Path(args.out) / "speed_onnx.json").read_text())
    results = run(args, previous)
    path = save_results(results, args.out, "speed_onnx")
    print(f"wrote {path}")
    if not args.quick:
        update_doc(results)


if __name__ == "__main__":
    main()
