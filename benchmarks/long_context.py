"""Task match on prompts with long context: the templated-prompt dev set, a 3-passage variant, the bundled pool
and IEB eft_test, for BM25, plain MiniLM and any number of task models.

    python benchmarks/long_context.py --model pie-minilm --model runs/pie-minilm-lc [--out results/long_context.json]

Sets (P@4 = share of the 4 nearest pool items with the query's task; pool→query unless noted):
- templated: pie_retriever.evaluation.bench.templated (42 templates around 48 passages, 336 pool / 336 queries; every
  query's passage is in the pool under other templates);
- bundled: the bundled pool (249) ← its 117 held-out queries;
- ieb-eft: IEB eft_test leave-one-out (3,291 instructions; evaluation only, never used to choose anything).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]


def _sets(with_eft: bool) -> dict[str, tuple[list[str], list[str], list[str] | None, list[str] | None]]:
    """name → (pool texts, pool labels, query texts, query labels); queries None = leave-one-out."""
    from pie_retriever.evaluation.bench.templated import templated_set
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    out = {}
    pool, queries = templated_set()
    out["templated"] = ([d.instruction for d in pool], [d.metadata["task"] for d in pool],
                        [q.instruction for q in queries], [q.metadata["task"] for q in queries])
    pool, queries = load_bundled_pool(), load_bundled_queries()
    out["bundled"] = ([d.instruction for d in pool], [d.metadata["task"] for d in pool],
                      [q.instruction for q in queries], [q.metadata["task"] for q in queries])
    if with_eft:
        from pie_retriever.pool.ieb import EFT_TEST, load_labelled

        ieb = Path(os.environ.get("PIE_IEB_DIR", REPO.parent / "shared" / "ieb"))
        texts, labels = load_labelled(ieb / EFT_TEST)
        out["ieb-eft"] = (texts, labels, None, None)
    return out


def _p4(ranked: np.ndarray, pool_labels: list[str], query_labels: list[str]) -> float:
    lab = np.asarray(pool_labels, dtype=object)
    return float(np.mean([(lab[r[:4]] == q).mean() for r, q in zip(ranked, query_labels)]))


def _rank(name: str, data: tuple, ranker) -> float:
    pool_texts, pool_labels, q_texts, q_labels = data
    if q_texts is None:
        ranked = ranker.rank(pool_texts, None, 10, loo=True)
        return _p4(ranked, pool_labels, pool_labels)
    return _p4(ranker.rank(pool_texts, q_texts, 10), pool_labels, q_labels)


def table(results: dict) -> str:
    names = list(results["sets"])
    lines = ["| method | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {r['method']} | " + " | ".join(f"{r['p@4'][n]:.4f}" for n in names) + " |" for r in results["rows"]]
    return "\n".join(lines) + "\n"


def render(path: Path) -> int:
    """The table of ``path`` between the long-context markers of docs/selection.md."""
    from pie_retriever._util import atomic_write_text

    res = json.loads(path.read_text(encoding="utf-8"))
    doc = REPO / "docs" / "selection.md"
    text = doc.read_text(encoding="utf-8")
    start, end = "<!-- long-context:start -->", "<!-- long-context:end -->"
    sizes = ", ".join(f"{n}: {d['pool']} pool / {d['queries']} queries" for n, d in res["sets"].items())
    body = (f"`{res['command'].strip()}`, {res['created']}, {res['threads']} thread{'s' * (res['threads'] != 1)}, load {res['load_average_start'][0]:.1f} "
            f"on 2 cores. Sets: {sizes} (ieb-eft = IEB eft_test, evaluation only).\n\n" + table(res))
    atomic_write_text(doc, text[: text.index(start) + len(start)] + "\n" + body + text[text.index(end):])
    print("rendered", path.name, "into docs/selection.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="task model (alias or artifact folder); repeatable")
    p.add_argument("--no-eft", action="store_true", help="skip IEB eft_test")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "results" / "long_context.json"))
    p.add_argument("--render", action="store_true", help="only write the table of --out into docs/selection.md")
    args = p.parse_args(argv)
    if args.render:
        return render(Path(args.out))
    import torch

    torch.set_num_threads(args.threads)
    from pie_retriever._util import atomic_write_text
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.rankers import BM25Ranker, EmbeddingRanker

    sets = _sets(not args.no_eft)
    rows = []
    methods = [("BM25", lambda: BM25Ranker(k1=1.5, b=0.75, stopwords="en")),
               ("minilm (plain)", lambda: EmbeddingRanker(TransformerEncoder("minilm")))]
    methods += [(m, (lambda m=m: EmbeddingRanker(TransformerEncoder(m)))) for m in args.model or ["pie-minilm"]]
    load0 = os.getloadavg()
    for label, make in methods:
        t0 = time.perf_counter()
        ranker = make()
        row = {"method": label, "p@4": {name: round(_rank(name, data, ranker), 4) for name, data in sets.items()},
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    from pie_retriever.evaluation.bench.runner import machine_info

    results = {"sets": {n: {"pool": len(d[0]), "queries": len(d[2]) if d[2] is not None else "leave-one-out"} for n, d in sets.items()},
               "rows": rows, "machine": machine_info(), "threads": args.threads, "load_average_start": list(load0),
               "load_average_end": list(os.getloadavg()), "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
               "command": "python benchmarks/long_context.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    atomic_write_text(Path(args.out), json.dumps(results, indent=1) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
