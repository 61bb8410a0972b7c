"""Served deployments: the exported default model through each loader, a vLLM embeddings server vs the in-process
encoder, a vLLM generation server vs the in-process engine on the bundled-pool ICL prompts, and the error paths.

    python benchmarks/serving.py [--data ../shared/ieb] [--n 1000] [--rounds 3] [--out results/serving.json] [--docs docs/serving.md]

1. ``export_model("pie-minilm", DIR)``: seconds, folder size.
2. Loaders of DIR — the project (``TransformerEncoder(DIR)``), sentence-transformers, vLLM's pooling runner
   (``python -m vllm.entrypoints.openai.api_server --model DIR --runner pooling``, no pooling flag) read through
   ``ServerEncoder`` — on the same ``--n`` instructions (a seeded sample of IEB ``eft_train_unsup``): load time,
   cosine to the in-package model (float32 and the default precision).
3. Throughput on those instructions: ``ServerEncoder`` (HTTP, batches of 64) vs the in-process encoder
   (``TransformerEncoder("pie-minilm")``, default precision), alternating rounds, median.
4. The bundled-pool ICL harness (``pie_retriever.evaluation.bench.icl.run_icl``: short-answer queries, conditions none /
   BM25 / PIE, k=4, greedy) through a vLLM generation server (``OpenAIServerLLM``) and through an in-process
   ``vllm.LLM`` on the same SmolLM2 folder: identical answers, wall time of each.
5. The error paths of ``ServerEncoder`` and ``PIEGenerator``: server down, HTTP 500 (the test suite's fake
   server: a real vLLM does not fail on demand), timeout, wrong model name, an over-long input without truncation.
6. IEB eft_test task P@4 of DIR: ``pie-retriever eval ieb --data ../shared/ieb --model DIR`` (evaluation only).

The machine is shared (2 cores): the 1-minute load average is recorded next to every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fake server of the fast tests, for the HTTP 500 row

import numpy as np  # noqa: E402

MAX_MODEL_LEN = 1024


def load1() -> float:
    return round(os.getloadavg()[0], 1)


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1)
    return {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}


def sample_instructions(data: Path, n: int) -> list[str]:
    from pie_retriever.pool.ieb import load_unlabelled

    texts = sorted({t.strip() for t in load_unlabelled(data / "eft_train_unsup.json") if t.strip()})
    return random.Random(0).sample(texts, n)


# -- 1 + 2: export and loaders ---------------------------------------------------------------------
def run_export(out: Path) -> dict[str, Any]:
    from pie_retriever import export_model

    started = time.perf_counter()
    path = export_model("pie-minilm", out, ieb_results=REPO / "results" / "ieb_eval.json")
    card = json.loads((path / "pie_export.json").read_text())
    return {"seconds": round(time.perf_counter() - started, 1), "bytes": folder_size(path), "load1": load1(), "path": str(path),
            "files": sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()),
            "card": {k: card[k] for k in ("source", "base", "artifact", "prompt", "pooling", "dim", "identical_vectors", "fingerprint")}}


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def run_loaders(export_dir: Path, texts: list[str], embed_server: Any) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from pie_retriever.encoders.server import ServerEncoder
    from pie_retriever.encoders.transformer import TransformerEncoder

    package, package_s = timed(lambda: TransformerEncoder("pie-minilm"))
    ref_default = package.encode(texts)
    ref_fp32 = TransformerEncoder("pie-minilm", precision="fp32").encode(texts)
    project, project_s = timed(lambda: TransformerEncoder(str(export_dir)))
    project_vecs = project.encode(texts)
    st, st_s = timed(lambda: SentenceTransformer(str(export_dir), device="cpu"))
    st_vecs = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=64)
    served, served_s = timed(lambda: ServerEncoder(embed_server.model, embed_server.base_url))
    served_vecs = served.encode(texts)
    rows = {
        "in-package model (reference)": {"load_s": round(package_s, 2), "vs_fp32": cosine_stats(ref_default, ref_fp32)},
        "project: TransformerEncoder(DIR)": {
            "load_s": round(project_s, 2), "vs_fp32": cosine_stats(project_vecs, ref_fp32),
            "vs_default": cosine_stats(project_vecs, ref_default), "max_abs_diff_vs_package": float(np.abs(project_vecs - ref_default).max()),
            "same_fingerprint": project.fingerprint == package.fingerprint},
        "sentence-transformers": {"load_s": round(st_s, 2), "vs_fp32": cosine_stats(st_vecs, ref_fp32),
                                  "vs_default": cosine_stats(st_vecs, ref_default)},
        "vLLM pooling runner (server)": {
            "load_s": round(embed_server.start_seconds, 1), "load_note": "server start to /health (process, engine, model)",
            "client_connect_s": round(served_s, 2), "vs_fp32": cosine_stats(served_vecs, ref_fp32),
            "vs_default": cosine_stats(served_vecs, ref_default), "pooling_from_card": served.pooling},
    }
    log = embed_server.log_path.read_text(errors="replace")
    pooled_by = "MEAN (sentence_transformers)" if "pooling_type=MEAN(source=sentence_transformers)" in log else "other"
    return {"n": len(texts), "loaders": rows, "vllm_pooling_config": pooled_by, "load1": load1()}


def run_throughput(export_dir: Path, texts: list[str], embed_server: Any, rounds: int) -> dict[str, Any]:
    from pie_retriever.encoders.server import ServerEncoder
    from pie_retriever.encoders.transformer import TransformerEncoder

    local = TransformerEncoder("pie-minilm")
    served = ServerEncoder(embed_server.model, embed_server.base_url, batch_size=64)
    local.encode(texts[:64])
    served.encode(texts[:64])  # warm-up
    times: dict[str, list[float]] = {"server": [], "in_process": []}
    loads = []
    for _ in range(rounds):
        for name, enc in (("server", served), ("in_process", local)):
            _, seconds = timed(lambda enc=enc: enc.encode(texts))
            times[name].append(seconds)
        loads.append(load1())
    out = {name: {"seconds": [round(s, 2) for s in ts], "per_s": round(len(texts) / statistics.median(ts), 1)} for name, ts in times.items()}
    out["ratio_server_over_in_process"] = round(out["server"]["per_s"] / out["in_process"]["per_s"], 2)
    out.update({"n": len(texts), "rounds": rounds, "load1": loads, "server_batch_size": 64,
                "in_process": {**out["in_process"], "precision": local.precision, "bf16": local.use_bf16}})
    return out


# -- 4: generation ---------------------------------------------------------------------------------
class ServerBackend:
    """The ICL harness's LLM backend over a served model (``OpenAIServerLLM``: one completions request per chunk)."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.name, self.prompt_tokens, self.generated_tokens = llm, f"server:{llm.model}", None, None

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: list[str]) -> list[str]:
        from pie_retriever.evaluation.bench.backends import cut_at_stop

        outs = self.llm.generate(list(prompts), {"temperature": 0.0, "max_tokens": max_new_tokens, "stop": list(stop)})
        return [cut_at_stop(o.outputs[0].text, stop) for o in outs]


def icl_setup() -> dict[str, Any]:
    """The bundled pool, its short-answer held-out queries and the conditions (none, BM25, PIE)."""
    from pie_retriever import PIERetriever
    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.bench.icl import SHORT_ANSWER_TASKS
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries
    from pie_retriever.retrieval.bm25 import BM25Retriever

    pool = load_bundled_pool()
    queries = [q for q in load_bundled_queries() if q.metadata.get("task") in SHORT_ANSWER_TASKS]
    conditions = {"none": None, "bm25": BM25Retriever(pool), "pie": PIERetriever.from_demonstrations(pool, TransformerEncoder("pie-minilm"))}
    return {"pool": pool, "queries": queries, "conditions": conditions}


def run_icl_with(backend: Any, setup: dict[str, Any]) -> dict[str, Any]:
    from pie_retriever.evaluation.bench.icl import run_icl

    report = run_icl(setup["pool"], setup["queries"], setup["conditions"], backend, k=4, show_progress=False)
    report["load1"] = load1()
    return report


class InProcessBackend:
    """The ICL harness's vLLM backend (as ``pie_retriever.evaluation.bench.backends.VLLMBackend``) with an explicit KV cache."""

    def __init__(self, path: str) -> None:
        from vllm import LLM

        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # it would override kv_cache_memory_bytes
        self.name, self.prompt_tokens, self.generated_tokens = "vllm:smollm2", None, None
        self.llm = LLM(model=path, dtype="float32", max_model_len=MAX_MODEL_LEN, enforce_eager=True, kv_cache_memory_bytes=256 << 20)

    def generate(self, prompts: list[str], *, max_new_tokens: int, stop: list[str]) -> list[str]:
        from vllm import SamplingParams

        from pie_retriever.evaluation.bench.backends import cut_at_stop

        results = self.llm.generate(list(prompts), SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop)), use_tqdm=False)
        return [cut_at_stop(r.outputs[0].text, stop) for r in results]

    def close(self) -> None:
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


def in_process_icl(setup: dict[str, Any], path: str) -> dict[str, Any]:
    """The ICL harness through an in-process ``vllm.LLM`` (default multiprocess engine core), shut down afterwards."""
    backend, start_s = timed(lambda: InProcessBackend(path))
    try:
        report = run_icl_with(backend, setup)
    finally:
        backend.close()
    report["start_s"] = round(start_s, 1)
    return report


def compare_icl(local: dict[str, Any], served: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    conditions = list(setup["conditions"])
    pairs = [(a["prediction"], b["prediction"]) for c in conditions
             for a, b in zip(local["conditions"][c]["records"], served["conditions"][c]["records"])]
    reports = {"in_process": local, "server": served}
    return {
        "queries": len(setup["queries"]), "conditions": conditions, "k": 4, "distinct_prompts": served["n_generations"],
        "identical_answers": sum(a == b for a, b in pairs), "answers": len(pairs),
        "differences": [{"in_process": a, "server": b} for a, b in pairs if a != b][:10],
        "wall_s": {name: r["generation_s"] for name, r in reports.items()},
        "score": {name: {c: round(r["conditions"][c]["score"], 4) for c in conditions} for name, r in reports.items()},
        "load1": {name: r["load1"] for name, r in reports.items()},
        "in_process_engine": f"vllm.LLM (default multiprocess engine core), float32, enforce_eager, max_model_len {MAX_MODEL_LEN}, "
                             f"started in {local['start_s']} s",
    }


# -- 5: error paths --------------------------------------------------------------------------------
def _capture(case: str, component: str, server: str, fn: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # the row records whatever was raised
        return {"case": case, "component": component, "server": server, "error": type(exc).__name__,
                "seconds": round(time.perf_counter() - started, 2), "message": str(exc)}
    return {"case": case, "component": component, "server": server, "error": None, "message": "no error raised"}


FAST = {"max_retries": 2, "backoff": 0.2}


def offline_errors(retriever: Any) -> list[dict[str, Any]]:
    """Server down (nothing listening) and HTTP 500 (the fast tests' fake server)."""
    from fake_openai_server import FakeServer, closed_port_url

    from pie_retriever.encoders.server import ServerEncoder
    from pie_retriever.integrations.vllm import PIEGenerator

    down = closed_port_url()
    fake = FakeServer(model="fake-model")
    fake.fail_status, fake.fail_times = 500, -1
    fake_name = "fake (tests/fake_openai_server.py)"
    rows = [
        _capture("server down", "ServerEncoder", "nothing listening", lambda: ServerEncoder("m", down, **FAST)),
        _capture("server down", "PIEGenerator", "nothing listening", lambda: PIEGenerator(down, retriever, server_options=FAST)),
        _capture("HTTP 500", "ServerEncoder", fake_name, lambda: ServerEncoder("fake-model", fake.base_url, **FAST)),
        _capture("HTTP 500", "PIEGenerator", fake_name, lambda: PIEGenerator(fake.base_url, retriever, model="fake-model", server_options=FAST)),
    ]
    fake.close()
    return rows


def embed_errors(embed_server: Any) -> list[dict[str, Any]]:
    from pie_retriever.encoders.server import ServerEncoder

    url, model = embed_server.base_url, embed_server.model
    return [
        _capture("timeout (0.05 s)", "ServerEncoder", "vLLM pooling",
                 lambda: ServerEncoder(model, url, timeout=0.05, max_retries=1, check=False).encode(["x " * 200] * 256)),
        _capture("wrong model name", "ServerEncoder", "vLLM pooling", lambda: ServerEncoder("pie-minilm", url)),
        _capture("input over max_model_len, truncation off", "ServerEncoder", "vLLM pooling",
                 lambda: ServerEncoder(model, url, truncate_prompt_tokens=None).encode(["word " * 400])),
    ]


def gen_errors(gen_server: Any, retriever: Any) -> list[dict[str, Any]]:
    from pie_retriever.integrations.vllm import PIEGenerator

    url = gen_server.base_url
    return [
        _capture("timeout (0.05 s)", "PIEGenerator", "vLLM generate",
                 lambda: PIEGenerator(url, retriever, server_options={"timeout": 0.05, "max_retries": 1}, tokenizer=None)
                 .generate(["Write a long story."], {"max_tokens": 200})),
        _capture("wrong model name", "PIEGenerator", "vLLM generate", lambda: PIEGenerator(url, retriever, model="smollm2")),
    ]


# -- 6: IEB ----------------------------------------------------------------------------------------
def run_ieb(export_dir: Path, data: Path) -> dict[str, Any]:
    """``pie-retriever eval ieb --data DATA --model DIR --model pie-minilm`` (evaluation only), both in one process so
    that both see the same threads and precision."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        cmd = [str(Path(sys.executable).with_name("pie-retriever")), "eval", "ieb", "--data", str(data),
               "--model", f"{export_dir}@name=exported", "--model", "pie-minilm@name=in-package", "--no-clustering", "-o", str(out)]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            msg = f"{' '.join(cmd)} failed: {done.stderr[-2000:]}"
            raise RuntimeError(msg)
        rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    keys = ("p@1", "p@4", "mrr", "iis_spearman")
    return {"command": "pie-retriever eval ieb --data ../shared/ieb --model DIR --model pie-minilm --no-clustering",
            "seconds": round(time.perf_counter() - started, 1), "n_instructions": rows["exported"].get("n_instructions"),
            **{k: round(rows["exported"][k], 4) for k in keys if k in rows["exported"]},
            "in_package": {k: round(rows["in-package"][k], 4) for k in keys if k in rows["in-package"]},
            "bf16": rows["exported"].get("bf16"), "load1": load1()}


# -- main ------------------------------------------------------------------------------------------
def render(results: dict[str, Any]) -> str:
    """The markdown tables of docs/serving.md."""
    ex, lo = results["export"], results["embeddings"]["loaders"]
    lines = [f"Export of `pie-minilm`: **{ex['bytes'] / 1e6:.1f} MB**, {ex['seconds']} s. IEB eft_test P@4 of the exported folder: "
             f"**{results['ieb']['p@4']:.4f}** (P@1 {results['ieb']['p@1']:.4f}; in-package `pie-minilm` in the same run: P@4 "
             f"{results['ieb']['in_package']['p@4']:.4f}, P@1 {results['ieb']['in_package']['p@1']:.4f}; {results['ieb']['n_instructions']:,} instructions).", "",
             "| loader of the exported folder | load time | cosine to in-package (fp32) min / mean | cosine to in-package (default precision) min / mean |",
             "|---|---|---|---|"]
    for name, row in lo.items():
        if "vs_default" not in row:
            continue
        load = f"{row['load_s']} s" + (" (server start)" if "load_note" in row else "")
        lines.append(f"| {name} | {load} | {row['vs_fp32']['min']:.6f} / {row['vs_fp32']['mean']:.6f} | "
                     f"{row['vs_default']['min']:.6f} / {row['vs_default']['mean']:.6f} |")
    tp, gen = results["throughput"], results["generation"]
    best = {k: round(tp["n"] / min(tp[k]["seconds"]), 1) for k in ("server", "in_process")}
    lines += ["", f"| {tp['n']:,} instructions | instructions/s, median of {tp['rounds']} (best round) | seconds per round | 1-min load |",
              "|---|---|---|---|",
              f"| vLLM server, `ServerEncoder` (HTTP, batches of 64) | {tp['server']['per_s']} ({best['server']}) | "
              f"{', '.join(map(str, tp['server']['seconds']))} | {', '.join(map(str, tp['load1']))} |",
              f"| in-process `TransformerEncoder(\"pie-minilm\")` (bf16 autocast: {tp['in_process']['bf16']}) | {tp['in_process']['per_s']} "
              f"({best['in_process']}) | {', '.join(map(str, tp['in_process']['seconds']))} | (same rounds) |", "",
              f"| ICL harness, bundled pool ({gen['queries']} short-answer queries × {len(gen['conditions'])} conditions, k=4, greedy) | "
              f"generation wall time | 1-min load after | exact match PIE / BM25 / none | answers identical to in-process |",
              "|---|---|---|---|---|",
              f"| in-process `vllm.LLM` | {gen['wall_s']['in_process']} s | {gen['load1']['in_process']} | "
              f"{' / '.join(str(gen['score']['in_process'][c]) for c in ('pie', 'bm25', 'none'))} | – |",
              f"| vLLM server (`OpenAIServerLLM`) | {gen['wall_s']['server']} s | {gen['load1']['server']} | "
              f"{' / '.join(str(gen['score']['server'][c]) for c in ('pie', 'bm25', 'none'))} | {gen['identical_answers']}/{gen['answers']} |", "",
              "| case | component | server | error | raised after | message |", "|---|---|---|---|---|---|"]
    for row in results["errors"]:
        message = row["message"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row['case']} | {row['component']} | {row['server']} | `{row['error']}` | {row.get('seconds', '–')} s | {message} |")
    return "\n".join(lines)


def write_docs(docs: Path, table: str) -> None:
    text = docs.read_text(encoding="utf-8")
    start, end = "<!-- serving-results:start -->", "<!-- serving-results:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    docs.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("PIE_IEB_DIR", str(REPO.parent / "shared" / "ieb")))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "results" / "serving.json"))
    parser.add_argument("--docs", default=None, help="docs page whose serving-results block is replaced with the tables")
    parser.add_argument("--ieb-only", action="store_true", help="re-run only the IEB section into an existing --out")
    parser.add_argument("--keep-ieb", action="store_true", help="keep the IEB section of an existing --out instead of re-running it")
    parser.add_argument("--render-only", action="store_true", help="only render an existing --out (and write --docs)")
    args = parser.parse_args()
    data = Path(args.data)
    if args.render_only:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
        print(render(results))
        if args.docs:
            write_docs(Path(args.docs), render(results))
        return
    if args.ieb_only:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
        results["ieb"] = run_ieb(Path(run_export(Path(tempfile.mkdtemp(prefix="serving-ieb-")) / "pie-minilm")["path"]), data)
        Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if args.docs:
            write_docs(Path(args.docs), render(results))
        return
    from pie_retriever.encoders.weights.gguf import smollm2_path
    from pie_retriever.integrations.openai_server import OpenAIServerLLM
    from pie_retriever.integrations.vllm_server import LocalVLLMServer

    results: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count()}
    out = Path(args.out)

    def save() -> None:  # after every section, so a late failure keeps the figures measured so far
        out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    export_dir = work / "pie-minilm"
    results["export"] = run_export(export_dir)
    previous = json.loads(out.read_text(encoding="utf-8")) if args.keep_ieb and out.is_file() else {}
    results["ieb"] = previous["ieb"] if "in_package" in previous.get("ieb", {}) else run_ieb(export_dir, data)
    save()
    # one server (or engine) at a time: the machine is shared and each engine holds a few GB
    with LocalVLLMServer(export_dir, runner="pooling", log_path=work / "embed.log") as embed:
        results["server_start_s"] = {"embeddings": round(embed.start_seconds, 1)}
        results["commands"] = {"embeddings": " ".join(embed.command[1:])}
        texts = sample_instructions(data, args.n)
        results["embeddings"] = run_loaders(export_dir, texts, embed)
        save()
        results["throughput"] = run_throughput(export_dir, texts, embed, args.rounds)
        errors = embed_errors(embed)
    setup = icl_setup()
    local = in_process_icl(setup, str(smollm2_path()))
    with LocalVLLMServer(smollm2_path(), max_model_len=MAX_MODEL_LEN, log_path=work / "generate.log") as gen:
        results["server_start_s"]["generation"] = round(gen.start_seconds, 1)
        results["commands"]["generation"] = " ".join(gen.command[1:])
        served = run_icl_with(ServerBackend(OpenAIServerLLM(base_url=gen.base_url)), setup)
        errors += gen_errors(gen, setup["conditions"]["pie"])
    results["generation"] = compare_icl(local, served, setup)
    errors += offline_errors(setup["conditions"]["pie"])
    order = ["server down", "HTTP 500", "timeout (0.05 s)", "wrong model name", "input over max_model_len, truncation off"]
    results["errors"] = sorted(errors, key=lambda r: (order.index(r["case"]), r["component"]))
    save()
    table = render(results)
    print(table)
    if args.docs:
        write_docs(Path(args.docs), table)


if __name__ == "__main__":
    main()
