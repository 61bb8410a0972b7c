"""PIE embeddings of SmolLM2-135M-Instruct through vLLM's pooling runner vs the transformers loop.

Same decoder, same PIE prompt, same stratified subset of IEB eft_test:

* ``vllm last``          — ``VLLMEncoder("smollm2", pooling="last")`` (vLLM ``LLM(runner="pooling")`` + ``embed``);
* ``transformers last``  — ``TransformerEncoder("smollm2", pooling="last", precision="fp32")``;
* ``transformers last2`` — ``TransformerEncoder("smollm2", pooling="last2", precision="fp32")`` (last token
  averaged over the last two layers: the paper's decoder pooling, which vLLM's pooler cannot compute);
* references on the same subset: BM25 and TF-IDF (quality only).

Quality: leave-one-out task retrieval (P@1, P@4, MRR@10 of same-label neighbours, cosine) and KMeans ARI
(one cluster per label in the subset) — ``pie_retriever.evaluation.{rankers,metrics}``. Throughput:
instructions/s encoding the whole subset (PIE prompt included) after a warm-up, at each ``--threads`` count, and
— less sensitive to the load of a shared machine — the median of ``--rounds`` rounds in which the transformers
``last`` loop and the vLLM encoder alternate on the same sample of ``--rounds-n`` instructions.

vLLM runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, unless set otherwise), so both paths use the same
torch thread count. The machine is shared: timings are noisy, the load average is recorded.

    python benchmarks/vllm_encoder_compare.py [--n 800] [--threads 1] [--rounds 3] [--out results/vllm_encoder_compare.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

REPO = Path(__file__).resolve().parents[1]


def stratified_subset(labels: list[str], n: int, seed: int) -> list[int]:
    """About ``n`` indices, each label represented in proportion, at least 2 per label (when it has 2)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    frac = n / len(labels)
    chosen: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        m = min(len(idx), max(2, round(len(idx) * frac)))
        chosen += rng.choice(idx, m, replace=False).tolist()
    return sorted(chosen)


def quality(vectors, labels: list[str]) -> dict[str, float]:
    from pie_retriever.evaluation.metrics import clustering_scores
    from pie_retriever.evaluation.rankers import top_k

    ranked = top_k(vectors @ vectors.T, 10, exclude_self_offset=0)
    return _rank_quality(ranked, labels) | {"ari": round(clustering_scores(vectors, labels, seed=0)["ari"], 4)}


def _rank_quality(ranked, labels: list[str]) -> dict[str, float]:
    import numpy as np

    from pie_retriever.evaluation.metrics import mrr, precision_at_k, relevance

    lab = np.asarray(labels, dtype=object)
    rel = relevance(labels, lab[ranked])
    return {"p_at_1": round(precision_at_k(rel, 1), 4), "p_at_4": round(precision_at_k(rel, 4), 4),
            "mrr_at_10": round(mrr(rel), 4)}


def timed_encode(encoder, texts: list[str]) -> tuple[object, float]:
    encoder.encode(texts[:16])  # warm-up (allocations, first-call overheads)
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    return vectors, time.perf_counter() - started


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=800, help="subset size (stratified by label); default 800")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch thread counts to time the single passes at; quality uses the first (default: 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved throughput rounds (transformers last, vllm last alternately); 0 skips")
    parser.add_argument("--rounds-n", type=int, default=256, help="instructions per interleaved round (default 256)")
    parser.add_argument("--ieb", default=os.environ.get("PIE_IEB_DIR", str(REPO.parent / "shared" / "ieb")))
    parser.add_argument("--batch-size", type=int, default=64, help="TransformerEncoder batch size")
    parser.add_argument("--out", default=str(REPO / "results" / "vllm_encoder_compare.json"))
    return parser.parse_args(argv)


def load_subset(ieb: str, n: int, seed: int) -> dict:
    """The stratified eft_test subset: texts, labels, totals and the leave-one-out P@4 ceiling."""
    import numpy as np

    from pie_retriever.pool.ieb import load_labelled

    instructions, labels = load_labelled(Path(ieb) / "eft_test.json")
    idx = stratified_subset(labels, n, seed)
    texts = [instructions[i] for i in idx]
    sub_labels = [labels[i] for i in idx]
    print(f"eft_test: {len(instructions)} instructions, {len(set(labels))} labels; subset: {len(texts)} instructions, "
          f"{len(set(sub_labels))} labels (seed {seed})", flush=True)
    counts = defaultdict(int)
    for label in sub_labels:
        counts[label] += 1
    # Leave-one-out P@4 cannot exceed min(4, same-label items - 1) / 4 per query: labels have few items in a subset.
    p4_ceiling = round(float(np.mean([min(4, counts[label] - 1) / 4 for label in sub_labels])), 4)
    return {"texts": texts, "labels": sub_labels, "total": len(instructions), "labels_total": len(set(labels)),
            "p_at_4_ceiling": p4_ceiling}


def run_method(name: str, make, note: str, texts: list[str], labels: list[str], thread_counts: list[int],
               set_num_threads) -> tuple[dict, object]:
    """Load an encoder, time it at each thread count, score the first pass; returns ``(row, vectors)``."""
    set_num_threads(thread_counts[0])
    gc.collect()
    started = time.perf_counter()
    encoder = make()
    load_seconds = time.perf_counter() - started
    row: dict = {"method": name, "note": note, "load_seconds": round(load_seconds, 1), "throughput": {}}
    first = None
    for i, threads in enumerate(thread_counts):
        set_num_threads(threads)
        vecs, seconds = timed_encode(encoder, texts)
        row["throughput"][str(threads)] = {"seconds": round(seconds, 2), "instructions_per_s": round(len(texts) / seconds, 2),
                                           "load_average": [round(x, 2) for x in os.getloadavg()]}
        print(f"  {name}: {len(texts)} instructions in {seconds:.1f} s with {threads} thread(s) "
              f"= {len(texts) / seconds:.1f}/s (load {os.getloadavg()[0]:.1f})", flush=True)
        if i == 0:
            first = vecs
    row.update(quality(first, labels))
    row["dim"] = int(first.shape[1])
    print(f"  {name}: {row}", flush=True)
    closer = getattr(encoder, "close", None)
    if callable(closer):
        closer()
    del encoder
    gc.collect()
    return row, first


def interleaved_throughput(texts: list[str], args: argparse.Namespace, set_num_threads) -> dict | None:
    """Transformers ``last`` and vLLM ``last`` alternating on the same sample, round after round (median rates).

    Single passes minutes apart see different loads on a shared machine; alternating the two paths on the
    same sample compares them under the same conditions.
    """
    import numpy as np

    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.integrations.vllm import VLLMEncoder

    if args.rounds <= 0:
        return None
    rng = np.random.default_rng(args.seed + 1)
    sample = [texts[i] for i in sorted(rng.choice(len(texts), min(args.rounds_n, len(texts)), replace=False))]
    print(f"interleaved throughput: {args.rounds} rounds x {len(sample)} instructions, {args.threads[0]} thread(s)", flush=True)
    set_num_threads(args.threads[0])
    encoders = {"transformers last": TransformerEncoder("smollm2", pooling="last", precision="fp32", batch_size=args.batch_size),
                "vllm last": VLLMEncoder("smollm2", pooling="last")}
    for enc in encoders.values():
        enc.encode(sample[:16])
    per_round: dict[str, list[float]] = {name: [] for name in encoders}
    for r in range(args.rounds):
        for name, enc in encoders.items():
            started = time.perf_counter()
            enc.encode(sample)
            rate = len(sample) / (time.perf_counter() - started)
            per_round[name].append(round(rate, 2))
            print(f"  round {r + 1}: {name} {rate:.1f}/s (load {os.getloadavg()[0]:.1f})", flush=True)
    medians = {name: round(float(np.median(v)), 2) for name, v in per_round.items()}
    out = {"rounds": args.rounds, "instructions": len(sample), "threads": args.threads[0],
           "instructions_per_s": per_round, "median_instructions_per_s": medians,
           "speedup_vllm_over_transformers": round(medians["vllm last"] / medians["transformers last"], 2)}
    print(f"  medians {medians}; vLLM / transformers = {out['speedup_vllm_over_transformers']}x", flush=True)
    encoders["vllm last"].close()
    del encoders
    gc.collect()
    return out


def lexical_references(texts: list[str], labels: list[str]) -> list[dict]:
    """BM25 and TF-IDF on the same subset (quality only)."""
    from pie_retriever.evaluation.metrics import clustering_scores
    from pie_retriever.evaluation.rankers import BM25Ranker, TfidfRanker

    references = []
    for name, ranker in (("BM25 (bm25s)", BM25Ranker()), ("TF-IDF", TfidfRanker())):
        ranked = ranker.rank(texts, None, 10, loo=True)
        row = {"method": name} | _rank_quality(ranked, labels)
        if name == "TF-IDF":
            row["ari"] = round(clustering_scores(ranker.embed(texts), labels, seed=0)["ari"], 4)
        references.append(row)
    return references


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    # In-process vLLM replaces torch.set_num_threads with a no-op (cpu_worker.py): keep the real one.
    set_num_threads = torch.set_num_threads
    set_num_threads(args.threads[0])

    from pie_retriever._util import library_versions
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.encoders.weights.gguf import smollm2_path
    from pie_retriever.evaluation.bench.runner import machine_info

    subset = load_subset(args.ieb, args.n, args.seed)
    texts, sub_labels = subset["texts"], subset["labels"]
    smollm2_path()  # materialise the decoder once, outside any timing

    def transformers(pooling: str):
        return lambda: TransformerEncoder("smollm2", pooling=pooling, precision="fp32", batch_size=args.batch_size)

    def vllm_last():
        from pie_retriever.integrations.vllm import VLLMEncoder  # imported only after the transformers runs

        return VLLMEncoder("smollm2", pooling="last")

    mode = "in-process" if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0" else "multiprocess"
    plan = [
        ("transformers loop, pooling=last", "transformers last", transformers("last"), "TransformerEncoder, fp32, batches of 64 sorted by length"),
        ("transformers loop, pooling=last2", "transformers last2", transformers("last2"),
         "TransformerEncoder, fp32, mean of the last two layers at the last token (paper)"),
        ("vLLM pooling runner, pooling=last", "vllm last", vllm_last,
         f"VLLMEncoder: LLM(runner='pooling', seq_pooling_type=LAST), float32, enforce_eager, {mode}"),
    ]
    methods: list[dict] = []
    vectors: dict = {}
    for title, name, make, note in plan:
        print(title, flush=True)
        row, vectors[name] = run_method(name, make, note, texts, sub_labels, args.threads, set_num_threads)
        methods.append(row)
    set_num_threads(args.threads[0])
    interleaved = interleaved_throughput(texts, args, set_num_threads)

    a, b = vectors["vllm last"], vectors["transformers last"]
    cos = (a * b).sum(axis=1)
    parity = {"mean": round(float(cos.mean()), 6), "min": round(float(cos.min()), 6)}
    print(f"cosine(vllm last, transformers last): mean {parity['mean']}, min {parity['min']}", flush=True)
    references = lexical_references(texts, sub_labels)

    import vllm

    result = {
        "benchmark": "vllm_encoder_compare",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": {"file": "eft_test.json", "total": subset["total"], "labels_total": subset["labels_total"],
                    "subset": len(texts), "labels_subset": len(set(sub_labels)), "seed": args.seed,
                    "p_at_4_ceiling": subset["p_at_4_ceiling"],
                    "sampling": "stratified: round(n_label * n / total), at least 2 per label"},
        "protocol": {"prompt": "pie", "loo": True, "ranking": "cosine, top 10", "clustering": "KMeans(n_clusters=labels in subset, random_state=0, n_init='auto')",
                     "throughput": "encode(subset) after a 16-text warm-up; instructions/s"},
        "vllm": {"version": vllm.__version__, "mode": mode, "dtype": "float32", "enforce_eager": True,
                 "kv_cache": os.environ.get("VLLM_CPU_KVCACHE_SPACE")},
        "machine": machine_info(),
        "versions": library_versions(),
        "methods": methods,
        "parity_vllm_vs_transformers_last": parity,
        "interleaved_throughput": interleaved,
        "references": references,
        "caveat": "2 shared CPU cores with other jobs running: timings are noisy (see load_average per measurement).",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print()
    print(render_table(result))
    print(f"\nwrote {out}")
    return 0


def render_table(result: dict) -> str:
    threads = list(result["methods"][0]["throughput"]) if result["methods"] else []
    head = ["method", "P@1", "P@4", "MRR@10", "KMeans ARI", "load/start s"] + [f"instr/s ({t} thr)" for t in threads]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in result["methods"]:
        cells = [m["method"], f"{m['p_at_1']:.3f}", f"{m['p_at_4']:.3f}", f"{m['mrr_at_10']:.3f}", f"{m['ari']:.3f}",
                 f"{m['load_seconds']:.1f}"] + [f"{m['throughput'][t]['instructions_per_s']:.1f}" for t in threads]
        lines.append("| " + " | ".join(cells) + " |")
    for r in result.get("references", []):
        cells = [r["method"], f"{r['p_at_1']:.3f}", f"{r['p_at_4']:.3f}", f"{r['mrr_at_10']:.3f}",
                 f"{r['ari']:.3f}" if "ari" in r else "–", "–"] + ["–" for _ in threads]
        lines.append("| " + " | ".join(cells) + " |")
    d = result["dataset"]
    p = result["parity_vllm_vs_transformers_last"]
    inter = result.get("interleaved_throughput")
    if inter:
        med = inter["median_instructions_per_s"]
        lines.append("")
        lines.append(f"Interleaved throughput ({inter['rounds']} alternating rounds x {inter['instructions']} instructions, "
                     f"{inter['threads']} torch thread): transformers last {med['transformers last']:.1f}/s, "
                     f"vLLM last {med['vllm last']:.1f}/s (median) = **{inter['speedup_vllm_over_transformers']:.2f}x**.")
    lines.append("")
    lines.append(f"IEB eft_test, stratified subset of {d['subset']} instructions / {d['labels_subset']} labels (seed {d['seed']}); "
                 f"PIE prompt; leave-one-out (best possible P@4 on this subset: {d['p_at_4_ceiling']:.3f}). cosine(vLLM last, transformers last): mean {p['mean']}, min {p['min']}. "
                 f"vLLM {result['vllm']['version']} {result['vllm']['mode']}. Shared 2-core CPU: timings are noisy.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
