#!/usr/bin/env python3
"""Readers' throughput and latency next to a busy writer (issue 25: a writer must not starve readers).

    python benchmarks/lock_fairness.py                        # current code → results/lock_fairness.json
    python benchmarks/lock_fairness.py --code /tmp/old --out results/lock_fairness_before.json
    python benchmarks/lock_fairness.py --seconds 3 --big 20000   # a quicker run
    python benchmarks/lock_fairness.py --render                  # the table of docs/reliability.md

Scenarios, each in its own process (``--code DIR`` first on PYTHONPATH measures another checkout):
  small   2,000 demonstrations (HashingEncoder, 64-d), for each index kind: 4 reader threads alone, then the
          same 4 readers while one thread loops ``add(5)`` + ``delete(5)`` as fast as it can (unpaced);
  big     ``--big`` demonstrations (default 100,000, flat fp16, 384-d), 4 readers alone, then with a writer paced
          at 20 ms and a saver looping ``save()`` without a pause, then with one pausing 1 s between saves.
Readers count answered queries and record each query's wall latency; the figures are readers' queries/s,
p50/p99/max latency and the writer's cycles/s. Every loop stops after ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, tempfile, threading, time
import numpy as np
from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder

kind, n, dim, seconds, writer_mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
saver, save_pause = sys.argv[6] != "0", float(sys.argv[6]) if sys.argv[6] not in ("0", "1") else 0.0
pool = [{"instruction": f"task {i % 50} write about topic {i} number {i * 7}", "output": "x", "id": f"d{i}"} for i in range(n)]
opts = {}  # the default storage of each kind (flat: fp16)
r = PIERetriever(HashingEncoder(dim=dim), index=kind, index_options=opts, content_scorer=None, content_weight=0)
for start in range(0, n, 20000):
    r.add(pool[start:start + 20000], show_progress=False)
queries = [f"write about topic {i} task {i % 50}" for i in range(200)]
stop = time.monotonic() + seconds
lat, lock = [], threading.Lock()
counts = {"writes": 0, "saves": 0}

def reader(seed):
    mine, i = [], seed
    while time.monotonic() < stop:
        t = time.perf_counter()
        r.retrieve(queries[i % len(queries)], k=4)
        mine.append(time.perf_counter() - t)
        i += 7
    with lock:
        lat.extend(mine)

def writer():
    i = 0
    while time.monotonic() < stop:
        ids = r.add([{"instruction": f"fresh {i} {j}", "output": "y"} for j in range(5)], show_progress=False)
        r.delete(ids)
        counts["writes"] += 1
        i += 1
        if writer_mode == "paced":
            time.sleep(0.02)

def saver_loop():
    with tempfile.TemporaryDirectory() as tmp:
        while time.monotonic() < stop:
            r.save(f"{tmp}/idx")
            counts["saves"] += 1
            time.sleep(save_pause)

threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
if writer_mode != "none":
    threads.append(threading.Thread(target=writer))
if saver:
    threads.append(threading.Thread(target=saver_loop))
t0 = time.monotonic()
for t in threads: t.start()
for t in threads: t.join(timeout=seconds + 120)
wall = time.monotonic() - t0
a = np.array(lat) * 1000
print("RESULT " + json.dumps({"queries": len(a), "qps": len(a) / wall, "p50_ms": float(np.percentile(a, 50)),
      "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "writer_cycles_per_s": counts["writes"] / wall,
      "saves": counts["saves"], "wall_s": wall}), flush=True)
"""


def _run(code: str | None, args: list[str], timeout: float) -> dict:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, "-c", WORKER, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=code or str(ROOT), check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


_LOADS = {("none", "0"): "nothing (readers alone)", ("unpaced", "0"): "a writer looping add(5)+delete(5), unpaced",
          ("paced", "1"): "a writer paced at 20 ms + a saver looping save()",
          ("paced", "1.0"): "a writer paced at 20 ms + a saver pausing 1 s"}


def render(before: Path, after: Path) -> str:
    """The before/after table of docs/reliability.md from two runs' JSON files."""
    rows = {name: json.loads(path.read_text())["rows"] for name, path in (("before", before), ("after", after))}

    def alone(run: list[dict], r: dict) -> dict:
        return next(x for x in run if (x["index"], x["demos"], x["writer"], x["saver"]) == (r["index"], r["demos"], "none", "0"))

    def cells(run: list[dict], r: dict) -> str:
        base = alone(run, r)
        share = "" if base is r else f" ({r['qps'] / base['qps']:.0%})"
        return f"{r['qps']:,.0f}{share} | {r['p50_ms']:.2f} / {r['p99_ms']:.1f} / {r['max_ms']:.0f}"

    out = ["| index | demos | next to 4 readers | before: readers q/s (share of alone) | p50 / p99 / max ms "
           "| after: readers q/s (share of alone) | p50 / p99 / max ms |", "|---|---:|---|---:|---|---:|---|"]
    for rb, ra in zip(rows["before"], rows["after"]):
        out.append(f"| {ra['index']} | {ra['demos']:,} | {_LOADS[(ra['writer'], ra['saver'])]} | {cells(rows['before'], rb)} "
                   f"| {cells(rows['after'], ra)} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", help="checkout to measure instead of this one")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "lock_fairness.json")
    ap.add_argument("--render", action="store_true", help="print the before/after table from results/lock_fairness*.json")
    a = ap.parse_args()
    if a.render:
        print(render(ROOT / "results" / "lock_fairness_before.json", ROOT / "results" / "lock_fairness.json"))
        return 0
    rows = []
    scenarios = [(kind, 2000, 64, mode, "0") for kind in ("flat", "hnsw", "numpy") for mode in ("none", "unpaced")]
    # saver: "0" none, "1" saving in a loop, "1.0" a save then a 1 s pause
    scenarios += [("flat", a.big, 384, "none", "0"), ("flat", a.big, 384, "paced", "1"), ("flat", a.big, 384, "paced", "1.0")]
    for kind, n, dim, mode, saver in scenarios:
        res = _run(a.code, [kind, str(n), str(dim), str(a.seconds), mode, saver], a.seconds * 4 + 300)
        load = dict(zip(("load1", "load5"), os.getloadavg()[:2]))
        row = {"index": kind, "demos": n, "writer": mode, "saver": saver, **res, **load}
        rows.append(row)
        print(f"{kind:6s} n={n:>6} writer={mode:8s} saver={saver:4s}  {res['qps']:8.0f} q/s  p50 {res['p50_ms']:.2f} ms"
              f"  p99 {res['p99_ms']:.2f} ms  max {res['max_ms']:.1f} ms  writer {res['writer_cycles_per_s']:.0f}/s  saves {res['saves']}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"seconds": a.seconds, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
