"""Cost of a task model at query and index time: load, one query, a batch, memory, artifact size.

    python benchmarks/model_cost.py --model pie-minilm-lc --model pie-mpnet [--out results/model_cost.json]

Each model runs in its own fresh process (so load time and resident memory are its own), on the same texts: the
first 512 distinct instructions of IEB eft_train_unsup ($PIE_IEB_DIR or ../shared/ieb; dev data) as a batch, and
100 of them one at a time (``encode_queries``, the encoder's thread policy: 1 thread for one text). Models are
measured alternately, ``--rounds`` times, and the medians reported, so that load on a shared machine falls on
every model alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, resource, statistics, sys, time
t0 = time.perf_counter()
from pie_retriever.encoders.transformer import TransformerEncoder
enc = TransformerEncoder(sys.argv[1])
enc.encode(["warm up"], show_progress=False)
load_s = time.perf_counter() - t0
texts = json.loads(sys.argv[2])
single = []
for t in texts[:100]:
    s = time.perf_counter(); enc.encode_queries([t], show_progress=False); single.append(time.perf_counter() - s)
s = time.perf_counter(); enc.encode_documents(texts, show_progress=False); batch_s = time.perf_counter() - s
print(json.dumps({"load_s": load_s, "single_p50_ms": 1000 * statistics.median(single),
                  "single_p95_ms": 1000 * sorted(single)[int(0.95 * len(single)) - 1], "batch_texts_per_s": len(texts) / batch_s,
                  "dim": enc.dim, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _texts(n: int) -> list[str]:
    from pie_retriever.pool.ieb import EFT_TRAIN_UNSUP, load_unlabelled

    ieb = Path(os.environ.get("PIE_IEB_DIR", REPO.parent / "shared" / "ieb"))
    return list(dict.fromkeys(t.strip() for t in load_unlabelled(ieb / EFT_TRAIN_UNSUP) if t.strip()))[:n]


def _artifact_bytes(model: str) -> int | None:
    from pie_retriever.encoders.models import resolve_model

    art = resolve_model(model).artifact
    return None if art is None else sum(f.stat().st_size for f in art.iterdir() if f.is_file())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="model spec; repeatable (default: pie-minilm-lc, pie-mpnet)")
    p.add_argument("--texts", type=int, default=512)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "results" / "model_cost.json"))
    args = p.parse_args()
    models = args.model or ["pie-minilm-lc", "pie-mpnet"]
    texts = _texts(args.texts)
    runs: dict[str, list[dict]] = {m: [] for m in models}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for r in range(args.rounds):
        for m in models:
            done = subprocess.run([sys.executable, "-c", _CHILD, m, json.dumps(texts)], capture_output=True, text=True, env=env, check=True)
            runs[m].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1} {m}: {runs[m][-1]}", flush=True)
    out = {"name": "model_cost", "created": time.strftime("%Y-%m-%d %H:%M:%S %z"), "texts": len(texts),
           "rounds": args.rounds, "load_average": os.getloadavg(), "cores": os.cpu_count(),
           "command": "python benchmarks/model_cost.py " + " ".join(f"--model {m}" for m in models), "models": {}}
    for m, rs in runs.items():
        med = {k: round(statistics.median(r[k] for r in rs), 2) for k in rs[0] if k != "dim"}
        out["models"][m] = {**med, "dim": rs[0]["dim"], "artifact_bytes": _artifact_bytes(m)}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print("| model | load s | one query p50 / p95 ms | batch texts/s | peak RSS MB | dim | artifact |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m, d in out["models"].items():
        art = f"{d['artifact_bytes'] / 1e6:.2f} MB" if d["artifact_bytes"] else "–"
        print(f"| {m} | {d['load_s']:.1f} | {d['single_p50_ms']:.1f} / {d['single_p95_ms']:.1f} | {d['batch_texts_per_s']:.0f} "
              f"| {d['max_rss_mb']:.0f} | {d['dim']} | {art} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
