"""Encoding throughput of the core path vs a naive fp32 loop, in one interleaved run.

    python benchmarks/encode_throughput.py [--n 512] [--rounds 2] [--model minilm] [--prompt pie]

Core path = ``TransformerEncoder.encode`` (length-sorted batches, bf16 autocast on CPUs with native bf16);
naive = texts in their given order, each batch padded to its longest text, fp32. Texts: a seeded sample of
IEB eft_test instructions (``$PIE_IEB_DIR`` or ``<repo>/../shared/ieb``). Prints JSON; the full benchmark
(`pie-retriever bench`) runs the same comparison in its speed section.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--prompt", default="pie")
    args = ap.parse_args()

    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.bench.flops import encode_comparison
    from pie_retriever.pool.ieb import load_labelled

    ieb = Path(os.environ.get("PIE_IEB_DIR", Path(__file__).resolve().parents[2] / "shared" / "ieb"))
    texts, _ = load_labelled(ieb / "eft_test.json")
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))[: args.n]]
    encoder = TransformerEncoder(args.model, prompt=args.prompt)
    start = time.perf_counter()
    result = encode_comparison(encoder, texts, prompt=args.prompt, rounds=args.rounds, variants=("core", "naive", "sorted_fp32"))
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["load_average"] = os.getloadavg()
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
