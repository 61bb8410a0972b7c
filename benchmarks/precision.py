"""fp32 vs bf16 autocast for the default encoder: what bf16 buys in speed and what it costs in agreement.

    python benchmarks/precision.py [--model pie-minilm-lc] [--rounds 3] [--out results/precision.json]

For each precision (``fp32``, ``bf16``; forced per encoder, whatever ``$PIE_PRECISION`` says):
- throughput: 1,000 bundled-pool texts (the 249 demonstrations' embedded text, the 117 queries and the 48 templated
  prompts (filled templates), cycled to 1,000) encoded as one batch call, best of ``--rounds`` interleaved rounds;
- agreement with fp32 of the same texts: cosine min / mean; the same texts encoded alone vs in the batch (max
  absolute component difference): what a retriever sees between ``retrieve`` and ``retrieve_batch``;
- top-4 agreement with fp32: the share of queries whose top-4 ids are the same set, on the bundled pool (117 queries
  → 249 demonstrations) and on IEB eft_test leave-one-out (3,291 instructions; read only, nothing is chosen on it).

The CPU's native bf16 (``avx512_bf16``/``amx_bf16``) is recorded with the figures: run it on each CPU kind you can
reach; on a CPU without native bf16, torch emulates bf16 (slower, same agreement class).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("PIE_PRECISION", None)  # each encoder below sets its own precision
REPO = Path(__file__).resolve().parents[1]
N_TEXTS = 1000
N_ALONE = 100  # texts also encoded one at a time (the single-query path)


def _texts() -> tuple[list[str], list[str], list[str]]:
    """(1,000 throughput texts, bundled pool texts, bundled query texts)."""
    from pie_retriever.evaluation.bench.templated import templated_set
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    pool = [d.text(("instruction", "input")) for d in load_bundled_pool()]
    queries = [q.instruction for q in load_bundled_queries()]
    templated = sorted({d.instruction for d in templated_set()[0]})[:48]
    return list(itertools.islice(itertools.cycle(pool + queries + templated), N_TEXTS)), pool, queries


def _top4(pool: np.ndarray, queries: np.ndarray | None) -> np.ndarray:
    from pie_retriever.evaluation.rankers import rank_by_vectors

    if queries is None:
        return rank_by_vectors(pool, pool, 4, loo=True)
    return rank_by_vectors(pool, queries, 4)


def _same_sets(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([set(x) == set(y) for x, y in zip(a, b)]))


def measure(model: str, rounds: int, eft_texts: list[str] | None) -> dict:
    from pie_retriever.encoders.transformer import TransformerEncoder

    texts, pool, queries = _texts()
    enc = {p: TransformerEncoder(model, precision=p) for p in ("fp32", "bf16")}
    assert enc["fp32"].precision == "fp32" and enc["bf16"].precision == "bf16"
    for e in enc.values():  # warm-up
        e.encode(texts[:64])
    seconds: dict[str, list[float]] = {p: [] for p in enc}
    vecs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for p, e in enc.items():
            t = time.perf_counter()
            vecs[p] = e.encode(texts)
            seconds[p].append(time.perf_counter() - t)
    out: dict = {"model": model, "n_texts": N_TEXTS, "rounds": rounds, "rows": {}}
    for p, e in enc.items():
        alone = np.stack([e.encode([t])[0] for t in texts[:N_ALONE]])
        cos = np.sum(vecs[p] * vecs["fp32"], axis=1)
        row = {
            "texts_per_s": round(N_TEXTS / min(seconds[p]), 1), "seconds": [round(s, 3) for s in seconds[p]],
            "cosine_to_fp32_min": float(cos.min()), "cosine_to_fp32_mean": float(cos.mean()),
            "alone_vs_batch_max_abs": float(np.abs(alone - vecs[p][:N_ALONE]).max()),
        }
        pool_v, q_v = e.encode_documents(pool), e.encode_queries(queries)
        row["_bundled_top4"] = _top4(pool_v, q_v)
        if eft_texts is not None:
            row["_eft_top4"] = _top4(e.encode(eft_texts), None)
        out["rows"][p] = row
    for p, row in out["rows"].items():
        row["top4_agreement_bundled"] = _same_sets(row.pop("_bundled_top4"), out["rows"]["fp32"]["_bundled_top4"]) if p != "fp32" else 1.0
        if eft_texts is not None:
            ref = out["rows"]["fp32"]["_eft_top4"]
            row["top4_agreement_eft_test"] = _same_sets(row.pop("_eft_top4"), ref) if p != "fp32" else 1.0
    out["rows"]["fp32"].pop("_bundled_top4", None)
    out["rows"]["fp32"].pop("_eft_top4", None)
    out["bf16_speedup"] = round(out["rows"]["bf16"]["texts_per_s"] / out["rows"]["fp32"]["texts_per_s"], 2)
    return out


def render(result: dict) -> str:
    cpu = result["machine"]
    lines = [f"CPU: {cpu.get('cpu', '?')}, flags {', '.join(cpu['cpu_flags']) or 'none of note'}; "
             f"native bf16: {cpu.get('native_bf16')}; load {cpu.get('load_average')}",
             "", "| precision | texts/s (1,000 texts) | cosine to fp32 min / mean | alone vs batch, max abs | "
             "top-4 agreement bundled | top-4 agreement eft_test |", "|---|---:|---:|---:|---:|---:|"]
    for p, r in result["rows"].items():
        eft = r.get("top4_agreement_eft_test")
        lines.append(f"| {p} | {r['texts_per_s']:,.0f} | {r['cosine_to_fp32_min']:.6f} / {r['cosine_to_fp32_mean']:.6f} | "
                     f"{r['alone_vs_batch_max_abs']:.1e} | {r['top4_agreement_bundled']:.3f} | "
                     f"{'–' if eft is None else f'{eft:.3f}'} |")
    lines.append(f"\nbf16 / fp32 throughput: {result['bf16_speedup']}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from pie_retriever.encoders.models import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ieb", default=os.environ.get("PIE_IEB_DIR", str(REPO.parent / "shared" / "ieb")))
    ap.add_argument("--out", default=None, help="write the JSON here (default: print only)")
    args = ap.parse_args(argv)
    eft = None
    eft_path = Path(args.ieb) / "eft_test.json"
    if eft_path.exists():
        from pie_retriever.pool.ieb import load_labelled

        eft = load_labelled(eft_path)[0]
    else:
        print(f"no {eft_path}: eft_test agreement skipped", file=sys.stderr)
    result = measure(args.model, args.rounds, eft)
    from pie_retriever.evaluation.bench.runner import machine_info

    result["machine"] = machine_info()
    result["onednn_max_cpu_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA")  # set to emulate a CPU without AMX / bf16
    print(render(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
