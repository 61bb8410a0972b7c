#!/usr/bin/env python3
"""Reliability under concurrency and crashes: a larger run than the test suite, with figures.

    python benchmarks/stress.py                       # current code, all sections → results/stress.json
    python benchmarks/stress.py --code /path/to/old   # the same run against another checkout ("before")
    python benchmarks/stress.py --sections threads --seconds 20 --runs 3

Sections:
  threads   4 reader threads + 1 writer + 1 saver on one PIERetriever (2,000 demos, HashingEncoder), per
            index kind, each run in its own process so that a crash is counted, not fatal;
  processes one process saving while three load the same folder, for ``--seconds``;
  kill      kill -9 a process in the middle of a save (``--kills`` times); the folder must load afterwards,
            and no temporary folder may survive the next save;
  hnsw      time of deleting one id from an HNSW index at 10k and 100k vectors (384-d).

``--code DIR`` puts DIR first on PYTHONPATH for the worker processes, so a checkout of an older commit
(``git worktree add /tmp/old <commit>``) is measured with the same harness (the harness file is run by
path; it only uses public names that exist in both).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "pie_retriever" / "bench" / "stress.py"

_ENCODER = """
try:
    from pie_retriever.encoders.hashing import HashingEncoder
except ImportError:  # checkouts before the layout change
    from pie_retriever.encoders.fake import HashingEncoder
"""

THREADS_WORKER = _ENCODER + """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("stress_harness", sys.argv[1])
h = importlib.util.module_from_spec(spec); sys.modules["stress_harness"] = h; spec.loader.exec_module(h)
from pie_retriever import PIERetriever
r = PIERetriever.from_demonstrations(h.make_pool(2000), HashingEncoder(dim=64), index=sys.argv[2])
report = h.run_stress(r, seconds=float(sys.argv[3]), readers=4, writer=True, saver=sys.argv[5] == "1", seed=int(sys.argv[4]))
print("RESULT " + json.dumps(report.as_dict()), flush=True)
"""


def _cwd(code: str | None) -> str:
    # `python -c` puts the working folder first on sys.path: run workers from the measured checkout
    return code or str(ROOT)


def _env(code: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_threads(code: str | None, seconds: float, runs: int) -> list[dict]:
    rows = []
    for kind in ("flat", "hnsw", "numpy"):
        for saver in (False, True):
            rows.append(_threads_row(code, kind, saver, seconds, runs))
            print(f"threads {kind} saver={saver}: {rows[-1]}", flush=True)
    return rows


def _threads_row(code: str | None, kind: str, saver: bool, seconds: float, runs: int) -> dict:
    keys = ("queries", "checked", "wrong_scores", "filter_violations", "empty_results", "exceptions", "saves", "writes")
    total = {"index": kind, "threads": "4 readers + writer" + (" + saver" if saver else ""), "runs": runs, "crashes": 0,
             **{k: 0 for k in keys}, "first_errors": []}
    for run in range(runs):
        proc = subprocess.run([sys.executable, "-c", THREADS_WORKER, str(HARNESS), kind, str(seconds), str(run), str(int(saver))],
                              capture_output=True, text=True, env=_env(code), cwd=_cwd(code), timeout=seconds * 10 + 120)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            total["crashes"] += 1
            total["first_errors"].append(f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"[:200])
            continue
        rep = json.loads(line[7:])
        for key in keys:
            total[key] += rep[key]
        total["first_errors"] += rep["first_errors"][:1]
    total["first_errors"] = total["first_errors"][:3]
    return total


SAVER = _ENCODER + """
import sys, time
from pie_retriever import PIERetriever
path, stop = sys.argv[1], time.time() + float(sys.argv[2])
enc = HashingEncoder(dim=64)
v = 0
while time.time() < stop:
    v += 1
    n = 1000 + (v % 50) * 20  # every version has its own size, so a mixed-up load cannot pass unnoticed
    demos = [{"instruction": f"version {v} demonstration {i} about topic {i % 31}", "metadata": {"v": v}} for i in range(n)]
    PIERetriever.from_demonstrations(demos, enc).save(path)
print("SAVES", v, flush=True)
"""

LOADER = _ENCODER + """
import sys, time
from pie_retriever import PIERetriever
path, stop = sys.argv[1], time.time() + float(sys.argv[2])
ok = failed = mixed = 0
errors = {}
while time.time() < stop:
    try:
        r = PIERetriever.load(path)
        versions = {d.metadata["v"] for d in r.demonstrations}
        if len(versions) != 1 or len(r) != len(r.index) or len(r) != 1000 + (versions.pop() % 50) * 20:
            mixed += 1
        else:
            ok += 1
    except Exception as exc:
        failed += 1
        key = type(exc).__name__ + ": " + str(exc)[:60]
        errors[key] = errors.get(key, 0) + 1
print("LOADS", ok, failed, mixed, repr(sorted(errors.items(), key=lambda kv: -kv[1])[:2]), flush=True)
"""


def run_processes(code: str | None, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "shared.pie")
        subprocess.run([sys.executable, "-c", SAVER, path, "1"], env=_env(code), cwd=_cwd(code), check=True, capture_output=True)
        saver = subprocess.Popen([sys.executable, "-c", SAVER, path, str(seconds)], env=_env(code), cwd=_cwd(code), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        loaders = [subprocess.Popen([sys.executable, "-c", LOADER, path, str(seconds)], env=_env(code), cwd=_cwd(code), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(3)]
        s_out, s_err = saver.communicate(timeout=seconds * 5 + 120)
        result = {"seconds": seconds, "saves": 0, "saver_failed": saver.returncode != 0, "loads_ok": 0, "loads_failed": 0,
                  "loads_mixed": 0, "errors": [], "leftovers": sorted(p.name for p in Path(tmp).iterdir() if p.name.startswith("."))}
        if saver.returncode != 0:
            result["errors"].append(s_err.strip().splitlines()[-1][:200] if s_err.strip() else f"saver exit {saver.returncode}")
        for line in s_out.splitlines():
            if line.startswith("SAVES"):
                result["saves"] = int(line.split()[1])
        for proc in loaders:
            out, _ = proc.communicate(timeout=seconds * 5 + 120)
            for line in out.splitlines():
                if line.startswith("LOADS"):
                    _, ok, failed, mixed, errs = line.split(" ", 4)
                    result["loads_ok"] += int(ok)
                    result["loads_failed"] += int(failed)
                    result["loads_mixed"] += int(mixed)
                    result["errors"].append(errs)
    print(f"processes: {result}", flush=True)
    return result


KILLED = _ENCODER + """
import sys
from pie_retriever import PIERetriever
demos = [{"instruction": f"new demonstration {i} about topic {i % 97}"} for i in range(40000)]
r = PIERetriever.from_demonstrations(demos, HashingEncoder(dim=64))
print("READY", flush=True)
while True:
    r.save(sys.argv[1])
"""


def run_kills(code: str | None, kills: int, seed: int = 0) -> dict:
    sys.path.insert(0, code) if code else None
    rng = random.Random(seed)
    loads_ok = leftovers_after_next_save = 0
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.pie"
        check = _ENCODER + textwrap.dedent("""
            import sys, os
            from pie_retriever import PIERetriever
            path = sys.argv[1]
            r = PIERetriever.load(path)
            assert len(r) in (6, 40000), len(r)
            r2 = PIERetriever.from_demonstrations([{"instruction": "one more save"}], HashingEncoder(dim=64))
            r2.save(os.path.join(os.path.dirname(path), "other.pie"))
            PIERetriever.from_demonstrations([d for d in r.demonstrations][:6], HashingEncoder(dim=64)).save(path)
            left = [p for p in os.listdir(os.path.dirname(path)) if p.startswith(".pool.pie.")]
            print("LEFT", len(left), flush=True)
        """)
        seed_demos = _ENCODER + "\nfrom pie_retriever import PIERetriever\nimport sys\nPIERetriever.from_demonstrations([{'instruction': f'seed {i}'} for i in range(6)], HashingEncoder(dim=64)).save(sys.argv[1])\n"
        subprocess.run([sys.executable, "-c", seed_demos, str(path)], env=_env(code), cwd=_cwd(code), check=True)
        for _ in range(kills):
            proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], env=_env(code), cwd=_cwd(code), stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "READY"
            time.sleep(rng.uniform(0.05, 1.5))  # somewhere inside one of the saves
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            out = subprocess.run([sys.executable, "-c", check, str(path)], env=_env(code), cwd=_cwd(code), capture_output=True, text=True)
            if out.returncode == 0:
                loads_ok += 1
                left = int(next(x for x in out.stdout.splitlines() if x.startswith("LEFT")).split()[1])
                leftovers_after_next_save += left
            else:
                failures.append(out.stderr.strip().splitlines()[-1][:200] if out.stderr.strip() else "?")
    result = {"kills": kills, "loads_ok": loads_ok, "temp_folders_left_after_next_save": leftovers_after_next_save,
              "failures": failures[:3]}
    print(f"kill: {result}", flush=True)
    return result


HNSW_WORKER = """
import sys, time
import numpy as np
from pie_retriever.index.faiss_index import FaissIndex
n, dim = int(sys.argv[1]), 384
rng = np.random.default_rng(0)
v = rng.standard_normal((n, dim)).astype(np.float32)
v /= np.linalg.norm(v, axis=1, keepdims=True)
idx = FaissIndex(dim, kind="hnsw")
t0 = time.perf_counter(); idx.add(np.arange(n, dtype=np.int64), v); build = time.perf_counter() - t0
times = []
for i in range(int(sys.argv[2])):
    t0 = time.perf_counter(); idx.remove(np.array([i * 7], dtype=np.int64)); times.append(time.perf_counter() - t0)
q = v[-5:]
scores, ids = idx.search(q, 4)
assert not set(ids.ravel().tolist()) & {i * 7 for i in range(int(sys.argv[2]))}
print("HNSW", n, build, max(times), sum(times) / len(times), len(idx), flush=True)
"""


def run_hnsw(code: str | None, sizes: list[int], deletes: int) -> list[dict]:
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", HNSW_WORKER, str(n), str(deletes)], env=_env(code), cwd=_cwd(code), capture_output=True,
                             text=True, timeout=3600)
        line = next((x for x in out.stdout.splitlines() if x.startswith("HNSW")), None)
        if line is None:
            rows.append({"n": n, "error": out.stderr.strip().splitlines()[-1:]})
            continue
        _, n_, build, worst, mean, left = line.split()
        rows.append({"n": int(n_), "build_s": round(float(build), 2), "deletes": deletes, "delete_max_s": round(float(worst), 4),
                     "delete_mean_s": round(float(mean), 4), "count_after": int(left)})
        print(f"hnsw: {rows[-1]}", flush=True)
    return rows


def _threads_table(before: dict, after: dict) -> list[str]:
    lines = ["| index | threads | runs (crashed) before → after | queries before → after | wrong scores | filter violations | "
             "empty results | exceptions |", "|---|---|---|---|---|---|---|---|"]
    old = {(r["index"], r["threads"]): r for r in before.get("threads", [])}
    for r in after.get("threads", []):
        b = old.get((r["index"], r["threads"]), {})
        cells = " | ".join(f"{b.get(k, '–')} → {r[k]}" for k in ("queries", "wrong_scores", "filter_violations", "empty_results", "exceptions"))
        lines.append(f"| {r['index']} | {r['threads']} | {b.get('runs', '–')} ({b.get('crashes', '–')}) → {r['runs']} ({r['crashes']}) | {cells} |")
    return lines


def render(before_path: Path, after_path: Path, page: Path) -> None:
    """Write the figures of both runs into ``page`` between the stress markers."""
    before = json.loads(before_path.read_text()) if before_path.is_file() else {}
    after = json.loads(after_path.read_text())
    lines = _threads_table(before, after)
    bp, ap = before.get("processes", {}), after["processes"]
    lines += ["", "| one saver + three loader processes, 10 s | saves | loads ok | loads failed | loads mixing two versions |",
              "|---|---|---|---|---|",
              f"| before | {bp.get('saves', '–')} | {bp.get('loads_ok', '–')} | {bp.get('loads_failed', '–')} | {bp.get('loads_mixed', '–')} |",
              f"| after | {ap['saves']} | {ap['loads_ok']} | {ap['loads_failed']} | {ap['loads_mixed']} |"]
    bk, ak = before.get("kill", {}), after["kill"]
    lines += ["", "| kill -9 during a save (40,000 demonstrations) | kills | loads that worked after | temp folders left after the next save (sum over the kills) |",
              "|---|---|---|---|",
              f"| before | {bk.get('kills', '–')} | {bk.get('loads_ok', '–')} | {bk.get('temp_folders_left_after_next_save', '–')} |",
              f"| after | {ak['kills']} | {ak['loads_ok']} | {ak['temp_folders_left_after_next_save']} |"]
    bh = {r["n"]: r for r in before.get("hnsw", []) if "n" in r}
    lines += ["", "| HNSW, 384-d | build | delete one id, before (rebuild) | delete one id, after (tombstone), mean of 3 |",
              "|---|---|---|---|"]
    for r in after["hnsw"]:
        b = bh.get(r["n"], {})
        lines.append(f"| {r['n']:,} vectors | {r['build_s']} s | {b.get('delete_mean_s', '–')} s | {r['delete_mean_s'] * 1000:.1f} ms |")
    text = page.read_text()
    start, end = "<!-- stress:start -->", "<!-- stress:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    page.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
    print(f"rendered {page}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code", default=None, help="a checkout to measure instead of this one (put first on PYTHONPATH)")
    p.add_argument("--sections", default="threads,processes,kill,hnsw")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each threaded run and of the process run")
    p.add_argument("--runs", type=int, default=3, help="threaded runs per index kind (each in its own process)")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--hnsw-sizes", default="10000,100000")
    p.add_argument("--hnsw-deletes", type=int, default=3)
    p.add_argument("-o", "--output", default=str(ROOT / "results" / "stress.json"))
    p.add_argument("--render", action="store_true", help="only write results/stress*.json into docs/reliability.md")
    args = p.parse_args()
    if args.render:
        render(ROOT / "results" / "stress_before.json", ROOT / "results" / "stress.json", ROOT / "docs" / "reliability.md")
        return 0
    sections = set(args.sections.split(","))
    out: dict = {"code": args.code or "this checkout", "loadavg_start": os.getloadavg(), "cpus": os.cpu_count()}
    t0 = time.perf_counter()
    if "threads" in sections:
        out["threads"] = run_threads(args.code, args.seconds, args.runs)
    if "processes" in sections:
        out["processes"] = run_processes(args.code, args.seconds)
    if "kill" in sections:
        out["kill"] = run_kills(args.code, args.kills)
    if "hnsw" in sections:
        out["hnsw"] = run_hnsw(args.code, [int(x) for x in args.hnsw_sizes.split(",")], args.hnsw_deletes)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["loadavg_end"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
