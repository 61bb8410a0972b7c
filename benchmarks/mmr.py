"""MMR against plain task match: P@4 (share of the 4 hits with the query's task) for plain order, classic MMR
(the old behaviour: all ``fetch_k`` candidates, λ 0.5) and the task-band MMR of ``retrieval/mmr.py``.

    python benchmarks/mmr.py                     # bundled pool + held-out queries (dev: choose λ / band here)
    python benchmarks/mmr.py --ieb /work/shared/ieb   # + IEB eft_test leave-one-out (evaluation only)

Also prints the mean pairwise cosine of the 4 hits (lower = more diverse), so the diversity MMR still buys
is visible. Writes nothing unless ``--out FILE`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pie_retriever.retrieval.mmr import DEFAULT_MMR_LAMBDA, TASK_BAND, mmr_order

K, FETCH_K = 4, 20


def _variants(sweep: bool = True) -> list[tuple[str, float, float | None]]:
    """Plain, the old classic MMR, the dev sweep (bundled only) and the shipped default."""
    rows: list[tuple[str, float, float | None]] = [("plain", 1.0, None), ("classic λ0.5 (before)", 0.5, None)]
    if not sweep:
        return [*rows, (f"default (band {TASK_BAND}, λ{DEFAULT_MMR_LAMBDA})", DEFAULT_MMR_LAMBDA, TASK_BAND)]
    rows += [(f"classic λ{lam}", lam, None) for lam in (0.7, 0.8, 0.9)]
    rows += [(f"band {b} λ{lam}", lam, b) for b in (0.1, 0.2, 0.3) for lam in (0.3, 0.5, 0.7)]
    rows.append((f"default (band {TASK_BAND}, λ{DEFAULT_MMR_LAMBDA})", DEFAULT_MMR_LAMBDA, TASK_BAND))
    return rows


def _score(qv: np.ndarray, dv: np.ndarray, q_labels: np.ndarray, d_labels: np.ndarray, self_index: bool,
           sweep: bool = True) -> dict[str, dict[str, float]]:
    sims = qv @ dv.T
    if self_index:
        np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :FETCH_K]
    out: dict[str, dict[str, float]] = {}
    for name, lam, band in _variants(sweep):
        p4, div = [], []
        for qi in range(len(qv)):
            cand = top[qi]
            order = list(range(K)) if name == "plain" else mmr_order(dv[cand], sims[qi, cand], K, lam, band)
            picks = cand[order]
            p4.append(float(np.mean(d_labels[picks] == q_labels[qi])))
            v = dv[picks]
            g = v @ v.T
            div.append(float((g.sum() - np.trace(g)) / (K * (K - 1))))
        out[name] = {"p@4": round(float(np.mean(p4)), 3), "pairwise_cos": round(float(np.mean(div)), 3)}
    return out


def bundled(encoder) -> dict[str, dict[str, float]]:
    """The bundled pool embedded as ``PIERetriever`` embeds it; queries as ``retrieve()`` sends them."""
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries
    from pie_retriever.types import EMBED_FIELDS

    pool, queries = load_bundled_pool(), load_bundled_queries()
    dv = encoder.encode_documents([d.text(EMBED_FIELDS) for d in pool])
    qv = encoder.encode_queries([q.instruction for q in queries])
    return _score(qv, dv, np.array([q.metadata["task"] for q in queries]), np.array([d.metadata["task"] for d in pool]), False)


def eft_test(encoder, folder: str) -> dict[str, dict[str, float]]:
    from pie_retriever.pool.ieb import EFT_TEST, load_labelled

    texts, labels = load_labelled(Path(folder) / EFT_TEST)
    dv = encoder.encode_documents(texts)
    qv = encoder.encode_queries(texts)
    return _score(qv, dv, np.array(labels), np.array(labels), True, sweep=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ieb", help="IEB data folder (adds eft_test; evaluation only)")
    p.add_argument("--model", default=None, help="encoder (default: the library default)")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    from pie_retriever.encoders.factory import make_encoder

    encoder = make_encoder(args.model)
    result = {"model": encoder.config().get("model"), "k": K, "fetch_k": FETCH_K, "bundled": bundled(encoder)}
    if args.ieb:
        result["eft_test"] = eft_test(encoder, args.ieb)
    for split in ("bundled", "eft_test"):
        if split in result:
            print(f"== {split}")
            for name, row in result[split].items():
                print(f"  {name:32s} P@4 {row['p@4']:.3f}  mean pairwise cos {row['pairwise_cos']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
