"""Cost of the content score at 10,000 demonstrations: build time, query latency and memory, per content scorer.

    python benchmarks/content_cost.py [--n 10000] [--queries 200] [--weight 0.25] [--out results/content_cost.json]

Demonstrations: the first N distinct instructions of IEB eft_train_unsup.json ($PIE_IEB_DIR or ../shared/ieb);
queries: the first Q instructions of ift_test.json (both allowed as dev data). The task index (the default model,
faiss flat) is built once; each scorer's features are then computed and attached, so the build time of the content
score is measured on its own. Latencies are medians of single-query ``retrieve`` calls (k=4), measured in
interleaved rounds (task-only, bm25, minilm, ...) so that a shared, loaded machine slows every variant alike;
``ratio`` is each variant's median over the task-only median of the same run. Memory: the scorer's own arrays
and Python objects (tracemalloc while they are built) plus, for the dense scorer, the MiniLM weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]


def _data(n: int, n_queries: int) -> tuple[list[str], list[str]]:
    from pie_retriever.pool.ieb import EFT_TRAIN_UNSUP, IFT_TEST, load_labelled, load_unlabelled

    ieb = Path(os.environ.get("PIE_IEB_DIR", REPO.parent / "shared" / "ieb"))
    texts = list(dict.fromkeys(t.strip() for t in load_unlabelled(ieb / EFT_TRAIN_UNSUP) if t.strip()))[:n]
    queries = list(dict.fromkeys(load_labelled(ieb / IFT_TEST)[0]))[:n_queries]
    return texts, queries


def _attach(r, scorer) -> dict:
    """Compute the scorer's features for the whole pool and attach it; seconds and traced bytes."""
    from pie_retriever.retrieval.content import CONTENT_FIELDS

    demos = r.demonstrations
    tracemalloc.start()
    t0 = time.perf_counter()
    scorer.add([r._label_of[d.id] for d in demos], scorer.features([d.text(CONTENT_FIELDS) for d in demos]))
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    current = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    r.content = scorer
    return {"build_s": round(seconds, 2), "traced_bytes": current, "traced_peak_bytes": peak, "nbytes": scorer.nbytes()}


def _latencies(r, queries: list[str], variants: dict[str, float], rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for q in queries:
            for name, weight in variants.items():
                t0 = time.perf_counter()
                r.retrieve(q, k=4, content_weight=weight)
                out[name].append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--weight", type=float, default=0.25, help="content_weight of the content variants")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "results" / "content_cost.json"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from pie_retriever import PIERetriever
    from pie_retriever._util import atomic_write_text
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.bench.runner import machine_info
    from pie_retriever.retrieval.content import BM25Content, DenseContent

    texts, queries = _data(args.n, args.queries)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    r = PIERetriever.from_demonstrations(texts, TransformerEncoder(DEFAULT_MODEL), content_scorer=None, show_progress=False)
    task_build = time.perf_counter() - t0
    minilm = TransformerEncoder("minilm", prompt="plain", pooling="mean")
    model_bytes = sum(t.numel() * t.element_size() for t in minilm.model.parameters())
    scorers = {"bm25": BM25Content(), "minilm": DenseContent(minilm)}
    results: dict = {"n": len(texts), "queries": len(queries), "weight": args.weight, "task_model": DEFAULT_MODEL,
                     "task_index_build_s": round(task_build, 1), "scorers": {}}
    for name, scorer in scorers.items():
        info = _attach(r, scorer)
        if name == "minilm":
            info["model_bytes"] = model_bytes
        lat = _latencies(r, queries, {"task-only": 0.0, name: args.weight}, args.rounds)
        base, var = statistics.median(lat["task-only"]), statistics.median(lat[name])
        info.update({"task_only_ms": round(1000 * base, 2), "with_content_ms": round(1000 * var, 2), "ratio": round(var / base, 2),
                     "with_content_p95_ms": round(1000 * sorted(lat[name])[int(0.95 * len(lat[name])) - 1], 2)})
        t0 = time.perf_counter()
        r.retrieve_batch(queries, k=4, content_weight=args.weight)
        batch_content = time.perf_counter() - t0
        t0 = time.perf_counter()
        r.retrieve_batch(queries, k=4, content_weight=0.0)
        batch_task = time.perf_counter() - t0
        info.update({"batch_task_only_s": round(batch_task, 3), "batch_with_content_s": round(batch_content, 3)})
        results["scorers"][name] = info
        print(name, info, file=sys.stderr, flush=True)
    results.update({"machine": machine_info(), "load_average_start": list(load0), "load_average_end": list(os.getloadavg()),
                    "threads": args.threads, "command": "python benchmarks/content_cost.py " + " ".join(argv or sys.argv[1:]),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S %z")})
    atomic_write_text(Path(args.out), json.dumps(results, indent=1) + "\n")
    print(json.dumps(results["scorers"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
