"""Load on ``pie-retriever serve``: closed-loop async httpx clients at several concurrencies against the bundled pool
scaled to ``--n`` demonstrations (ONNX encoder), next to in-process ``retrieve`` p50 and ``retrieve_batch``
throughput on the same queries, in the same run.

    python benchmarks/service_load.py [--n 10000] [--duration 8] [--concurrency 1 8 32 128] [--out results/service_load.json]

Every level is bounded in time (``--duration`` s of sending, then the requests in flight finish). The clients run in
this process, on the same 2 shared cores as the server, so the HTTP figures include the clients' own CPU; the
1-minute load average is recorded. The server binds 127.0.0.1 without keys and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def build_index(n: int, model: str, folder: Path) -> list[str]:
    """The bundled pool scaled to ``n`` (suffixed variants of its instructions), indexed and saved; returns the queries."""
    from pie_retriever import PIERetriever
    from pie_retriever.encoders import make_encoder
    from pie_retriever.evaluation.bench.speed import synthetic_texts
    from pie_retriever.pool.pools import bundled_queries_path, load_bundled_pool, load_pool

    base = load_bundled_pool()
    texts = synthetic_texts([d.instruction for d in base], n)
    by_text = {d.instruction.strip(): d for d in base}
    demos = []
    for i, text in enumerate(texts):
        src = by_text.get(text) or base[i % len(base)]
        demos.append({"id": f"s{i}", "instruction": text, "input": src.input, "output": src.output, "metadata": dict(src.metadata)})
    PIERetriever.from_demonstrations(demos, make_encoder(model)).save(folder)
    return [d.instruction for d in load_pool(bundled_queries_path())]


def in_process(folder: Path, queries: list[str], budget_s: float = 4.0) -> dict[str, Any]:
    from pie_retriever import PIERetriever

    r = PIERetriever.load(folder)
    r.retrieve(queries[0], k=4)
    lat, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < budget_s and i < 2000:
        t = time.perf_counter()
        r.retrieve(queries[i % len(queries)], k=4)
        lat.append(time.perf_counter() - t)
        i += 1
    done, start, j = 0, time.perf_counter(), 0
    while time.perf_counter() - start < budget_s and j < 200:
        batch = [queries[(j * 64 + m) % len(queries)] for m in range(64)]
        r.retrieve_batch(batch, k=4)
        done += len(batch)
        j += 1
    return {"retrieve_p50_ms": 1000 * statistics.median(lat), "retrieve_n": len(lat),
            "retrieve_batch64_qps": done / (time.perf_counter() - start)}


async def closed_loop(url: str, queries: list[str], clients: int, duration: float) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    codes: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        async def worker(w: int) -> None:
            i = w
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    r = await c.post("/v1/indexes/pool/search", json={"query": queries[i % len(queries)], "k": 4})
                    key = str(r.status_code)
                except httpx.TimeoutException:
                    key = "timeout"
                except httpx.HTTPError:
                    key = "transport_error"
                codes[key] = codes.get(key, 0) + 1
                if key == "200":
                    lat.append(time.perf_counter() - t)
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - start
    other = sum(v for k, v in codes.items() if k not in ("200", "503"))
    return {"clients": clients, "seconds": round(elapsed, 2), "ok": codes.get("200", 0), "shed_503": codes.get("503", 0),
            "errors": other, "codes": codes, "req_per_s": codes.get("200", 0) / elapsed,
            "p50_ms": 1000 * _percentile(lat, 0.5), "p99_ms": 1000 * _percentile(lat, 0.99)}


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PIE_SERVE_KEYS", "PIE_SERVE_KEYS_FILE")}
    cmd = [sys.executable, "-m", "pie_retriever.cli", "serve", f"pool={folder}", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # at most ~60 s
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server not ready in 60 s")


def render(res: dict[str, Any]) -> str:
    ip = res["in_process"]
    lines = [f"in-process ({res['n']} demonstrations): retrieve p50 {ip['retrieve_p50_ms']:.2f} ms, "
             f"retrieve_batch(64) {ip['retrieve_batch64_qps']:.0f} queries/s",
             "| clients | req/s | p50 ms | p99 ms | errors | 503s | server RSS MB |", "|---|---|---|---|---|---|---|"]
    for row in res["levels"]:
        lines.append(f"| {row['clients']} | {row['req_per_s']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} "
                     f"| {row['shed_503']} | {row['server_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--model", default="pie-minilm-lc-onnx")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of load per concurrency (the issue's full run: 20)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--out", default=str(REPO / "results" / "service_load.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pie-load-") as tmp:
        folder = Path(tmp) / "pool"
        t = time.perf_counter()
        queries = build_index(args.n, args.model, folder)
        build_s = time.perf_counter() - t
        inproc = in_process(folder, queries)
        proc, url = start_server(folder, Path(tmp) / "server.log")
        levels = []
        try:
            for clients in args.concurrency:
                row = asyncio.run(closed_loop(url, queries, clients, args.duration))
                row["server_rss_mb"] = _rss_mb(proc.pid)
                row["load_avg_1m"] = os.getloadavg()[0]
                levels.append(row)
                print(f"{clients} clients: {row['req_per_s']:.0f} req/s, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                      f"{row['errors']} errors, {row['shed_503']} 503s", flush=True)
            import httpx

            metrics = httpx.get(f"{url}/metrics", timeout=10).text
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    batches = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
               if line.startswith("pie_search_batch_queries_") and not line.startswith("pie_search_batch_queries_created")}
    res = {"n": args.n, "model": args.model, "duration_s": args.duration, "build_s": round(build_s, 1), "cpus": os.cpu_count(),
           "queries": len(queries), "in_process": inproc, "levels": levels,
           "mean_batch_queries": batches.get("pie_search_batch_queries_sum", 0) / max(1.0, batches.get("pie_search_batch_queries_count", 0)),
           "note": "clients and server share the machine's cores; HTTP figures include the clients' CPU"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(render(res))
    print(f"mean queries per micro-batch: {res['mean_batch_queries']:.1f}; wrote {args.out}")


if __name__ == "__main__":
    main()
