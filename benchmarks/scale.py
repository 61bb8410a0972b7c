#!/usr/bin/env python3
"""Scale-out figures: Milvus Lite vs faiss at 100k, Ray Data (local) vs one process, start-up costs, and the
top-k agreement of Milvus and faiss flat.

    nice -n 10 python benchmarks/scale.py                        # every section → results/scale.json
    python benchmarks/scale.py --sections milvus --n 20000       # one section, smaller

Sections:
  startup    Milvus Lite: a new database file + collection + insert + search; Ray: ``ray.init(num_cpus=2)``,
             an actor pool's first batch (hashing encoder), and an actor that loads the default model;
  encode     one process vs ``encode_with_ray`` (2 actors, 1 CPU each): the default model on ``--model-n``
             instructions, and the hashing encoder on ``--n`` (the pipeline's own overhead); vectors compared
             bit for bit;
  milvus     at ``--n`` vectors: build, single-query and batched latency, recall@4/@10 against exact search,
             for Milvus Lite (FLAT, HNSW) and faiss (flat, HNSW); a filtered query pushed down vs sent as ids;
             save and load of a Milvus-backed retriever;
  agreement  top-4 of Milvus Lite FLAT vs faiss flat with the default model: the bundled pool (249 / 117
             queries) and ``--agree-n`` templated instructions (1,000 queries).

Data: instructions made here from the templates below (task × slot values; written for this project, no prompt
collection used). The 100k vectors of the ``milvus`` section are the default model's *input token embeddings*,
mean-pooled (no transformer pass): the full model encodes about 16 texts/s on this shared machine, so 100k would
take hours. Exact (FLAT) timings do not depend on the values; HNSW recall does. The ``agreement`` section uses
the full default model; its vectors are cached in ``runs/scale/`` (not tracked).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "scale"
SLOTS: dict[str, list[str]] = {
    "topic": ["the ocean", "taxes", "cats", "rockets", "gardening", "jazz", "chess", "bread", "rivers", "databases", "volcanoes",
              "elections", "coffee", "bicycles", "glaciers", "vaccines", "robots", "medieval castles", "solar panels", "bees",
              "the stock market", "football", "origami", "deserts", "submarines", "tea ceremonies", "wolves", "opera", "trains",
              "climate change", "photography", "chocolate", "earthquakes", "libraries", "smartphones", "pirates", "yoga",
              "black holes", "recycling", "the Roman empire"],
    "audience": ["a child", "a teenager", "an expert", "a beginner", "my grandmother", "a CEO", "a student", "a tourist",
                 "a scientist", "a poet"],
    "form": ["poem", "haiku", "limerick", "sonnet", "ballad", "ode", "free verse poem", "rhyming couplet"],
    "doc": ["article", "email", "review", "report", "blog post", "news story", "essay", "letter", "memo", "speech"],
    "lang": ["French", "German", "Spanish", "Italian", "Japanese", "Portuguese", "Dutch", "Korean"],
    "n": ["two", "three", "four", "five", "six", "seven", "eight", "ten"],
    "tone": ["formal", "friendly", "humorous", "neutral", "persuasive", "sarcastic", "polite", "enthusiastic"],
    "things": ["facts", "questions", "tips", "myths", "risks", "benefits", "examples", "books"],
}
TEMPLATES: dict[str, str] = {
    "write|poem": "Write a {tone} {form} about {topic} for {audience}.",
    "summarize|text": "Summarize this {doc} about {topic} in {n} sentences for {audience}.",
    "translate|text": "Translate the following {tone} {doc} about {topic} into {lang}.",
    "classify|sentiment": "Classify the sentiment of this {doc} about {topic} written by {audience}.",
    "list|items": "List {n} {things} about {topic} for {audience}.",
    "explain|concept": "Explain {topic} to {audience} in a {tone} way.",
    "extract|entity": "Extract every person and place named in this {doc} about {topic}, answering in {lang}.",
    "rewrite|text": "Rewrite this {doc} about {topic} in a {tone} tone for {audience}.",
    "generate|title": "Suggest {n} titles for a {doc} about {topic}.",
    "write|email": "Write a {tone} email to {audience} about {topic}.",
    "answer|question": "Answer in {n} sentences: why does {topic} matter to {audience}?",
    "correct|grammar": "Fix the grammar and spelling of this {doc} about {topic}.",
    "generate|question": "Write {n} quiz questions about {topic} for {audience}.",
    "compose|dialogue": "Write a {tone} dialogue between {audience} and a guide about {topic}.",
}


def templated(total: int, seed: int = 0) -> list[tuple[str, str]]:
    """``total`` distinct (instruction, task) pairs, shuffled with ``seed``."""
    rows = []
    for task, template in TEMPLATES.items():
        names = [s for s in SLOTS if "{" + s + "}" in template]
        for values in itertools.product(*(SLOTS[s] for s in names)):
            rows.append((template.format(**dict(zip(names, values))), task))
    if total > len(rows):
        raise SystemExit(f"the templates make {len(rows)} instructions; asked for {total}")
    random.Random(seed).shuffle(rows)
    return rows[:total]


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _default_encoder() -> Any:
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(DEFAULT_MODEL)


# -- startup --------------------------------------------------------------------------------------------
def section_startup(args: argparse.Namespace) -> dict:
    from pie_retriever.encoders.hashing import HashingEncoder
    from pie_retriever.index.milvus_index import MilvusIndex, close_local_server

    out: dict[str, Any] = {"load_before": _load()}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"{tmp}/first.db"

        def first() -> None:
            index = MilvusIndex(8, uri=uri, collection="c")
            index.add(np.arange(3), np.eye(3, 8, dtype=np.float32))
            index.search(np.eye(1, 8, dtype=np.float32), 2)

        _, out["milvus_lite_first_collection_s"] = _timed(first)
        close_local_server(uri)
    import ray

    from pie_retriever.retrieval.distributed import encode_with_ray

    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    _, out["ray_init_s"] = _timed(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False))
    _, out["ray_actor_pool_first_batch_hashing_s"] = _timed(lambda: encode_with_ray(HashingEncoder(dim=32), ["a b"] * 10, workers=2))
    enc = _default_encoder()
    _, out["ray_actor_pool_first_batch_default_model_s"] = _timed(lambda: encode_with_ray(enc, ["Write a poem."] * 10, workers=2))
    _, out["ray_shutdown_s"] = _timed(ray.shutdown)
    out["load_after"] = _load()
    return out


# -- encode ---------------------------------------------------------------------------------------------
def _compare_engines(encoder: Any, texts: list[str], workers: int) -> dict:
    from pie_retriever._threads import apply_threads
    from pie_retriever.retrieval.distributed import encode_with_ray

    apply_threads(None, len(texts))
    load = _load()
    local, t_local = _timed(lambda: encoder.encode_documents(texts))
    remote, t_ray = _timed(lambda: encode_with_ray(encoder, texts, workers=workers))  # starts and stops Ray
    return {"n": len(texts), "single_process_s": round(t_local, 2), "ray_s": round(t_ray, 2),
            "single_texts_per_s": round(len(texts) / t_local, 1), "ray_texts_per_s": round(len(texts) / t_ray, 1),
            "ray_overhead_s": round(t_ray - t_local, 2), "ray_vs_single_throughput": round(t_local / t_ray, 3),
            "identical_vectors": bool(np.array_equal(local, remote)), "workers": workers, "load": [load, _load()]}


def section_encode(args: argparse.Namespace) -> dict:
    from pie_retriever.encoders.hashing import HashingEncoder

    texts = [t for t, _ in templated(args.n)]
    return {"default_model": _compare_engines(_default_encoder(), texts[:args.model_n], args.workers),
            "hashing": _compare_engines(HashingEncoder(dim=384), texts, args.workers)}


# -- milvus vs faiss at n -------------------------------------------------------------------------------
def static_vectors(encoder: Any, texts: list[str]) -> np.ndarray:
    """Mean of the default model's input token embeddings per text, L2-normalised (no transformer pass)."""
    from pie_retriever.encoders.base import l2_normalize

    table = encoder.model.get_input_embeddings().weight.detach().float().numpy()
    ids = encoder.tokenizer(texts, add_special_tokens=False)["input_ids"]
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids])
    starts = np.cumsum([0] + [len(x) for x in ids[:-1]])
    sums = np.add.reduceat(table[flat], starts, axis=0)
    return l2_normalize(sums / np.asarray([len(x) for x in ids], dtype=np.float32)[:, None])


def _recall(got: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(e[:k])) / k for g, e in zip(got, exact)]))


def _measure_index(index: Any, vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray) -> dict:
    labels = np.arange(len(vectors), dtype=np.int64)

    def build() -> None:
        for s in range(0, len(vectors), 10_000):
            index.add(labels[s:s + 10_000], vectors[s:s + 10_000])

    _, t_build = _timed(build)
    index.search(queries[:1], 10)  # warm
    singles = [_timed(lambda i=i: index.search(queries[i:i + 1], 4))[1] for i in range(50)]
    (_, got), t_batch = _timed(lambda: index.search(queries, 10))
    return {"build_s": round(t_build, 2), "single_query_ms_median": round(1000 * statistics.median(singles), 2),
            "single_query_ms_p90": round(1000 * sorted(singles)[44], 2),
            "batched_query_ms_per_query": round(1000 * t_batch / len(queries), 3), "batch": len(queries),
            "recall@4": round(_recall(got, exact, 4), 4), "recall@10": round(_recall(got, exact, 10), 4), "load": _load()}


def _kinds(dim: int, tmp: str) -> dict[str, Callable[[], Any]]:
    from pie_retriever.index import create_index, index_class
    from pie_retriever.index.milvus_index import MilvusIndex

    kinds = {"milvus_lite_flat": lambda: MilvusIndex(dim, uri=f"{tmp}/flat.db", collection="c"),
             "milvus_lite_hnsw": lambda: MilvusIndex(dim, uri=f"{tmp}/hnsw.db", collection="c", index_type="HNSW"),
             "faiss_flat_default": lambda: create_index(dim, "flat"),
             "faiss_hnsw_default": lambda: create_index(dim, "hnsw")}
    try:
        fp32 = index_class("flat").check_options({"vectors": "fp32"}, "flat")
        kinds["faiss_flat_fp32"] = lambda: create_index(dim, "flat", **fp32)
    except ValueError:
        pass
    return kinds


def _filtered(index: Any, queries: np.ndarray, tasks: np.ndarray) -> dict:
    """One query with a task filter: pushed down to the meta_task field vs sent as the allowed ids."""
    from pie_retriever.retrieval.filters import compile_filter

    flt = compile_filter({"task": "write|poem"})
    allowed = np.flatnonzero(tasks == "write|poem").astype(np.int64)
    push = [_timed(lambda i=i: index.search(queries[i:i + 1], 4, allowed=allowed, where=flt))[1] for i in range(10)]
    ids = [_timed(lambda i=i: index.search(queries[i:i + 1], 4, allowed=allowed))[1] for i in range(10)]
    return {"allowed": len(allowed), "pushed_down_ms_median": round(1000 * statistics.median(push), 1),
            "id_list_ms_median": round(1000 * statistics.median(ids), 1)}


def section_milvus(args: argparse.Namespace) -> dict:
    from pie_retriever.index.base import exact_topk
    from pie_retriever.index.milvus_index import close_local_server

    rows = templated(args.n + 1000, seed=1)
    encoder = _default_encoder()
    vectors, t_vec = _timed(lambda: static_vectors(encoder, [t for t, _ in rows]))
    base, queries = vectors[:args.n], vectors[args.n:]
    tasks = np.asarray([k for _, k in rows[:args.n]])
    exact = exact_topk(base, np.arange(args.n, dtype=np.int64), queries, 10)[1]
    out: dict[str, Any] = {"n": args.n, "queries": len(queries), "dim": int(base.shape[1]), "vectors": "static (token embeddings)",
                           "vectors_s": round(t_vec, 1), "indexes": {}}
    tmp = tempfile.mkdtemp(prefix="scale-")
    try:
        for name, make in _kinds(base.shape[1], tmp).items():
            index = make()
            out["indexes"][name] = _measure_index(index, base, queries, exact)
            if name == "milvus_lite_flat":
                out["filtered_query"] = _filtered(index, queries, tasks)
            print(name, out["indexes"][name], flush=True)
            del index
        for db in Path(tmp).glob("*.db"):
            close_local_server(str(db))
        out["persistence"] = _milvus_persistence(rows[:args.n], base, encoder, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _milvus_persistence(rows: list[tuple[str, str]], vectors: np.ndarray, encoder: Any, tmp: str) -> dict:
    """Build a Milvus-backed retriever through the public API (vectors precomputed), save it, load it."""
    from pie_retriever import PIERetriever
    from pie_retriever.index.milvus_index import close_local_server
    from pie_retriever.retrieval.distributed import _Precomputed

    texts = [t for t, _ in rows]
    demos = [{"id": f"s{i}", "instruction": t, "metadata": {"task": k}} for i, (t, k) in enumerate(rows)]
    uri = f"{tmp}/retriever.db"
    r = PIERetriever(encoder, index="milvus", index_options={"uri": uri, "collection": "pool"})
    r.encoder = _Precomputed(encoder, texts, vectors)
    _, t_add = _timed(lambda: r.add(demos))
    r.encoder = encoder
    _, t_save = _timed(lambda: r.save(f"{tmp}/idx"))
    loaded, t_load = _timed(lambda: PIERetriever.load(f"{tmp}/idx", encoder=encoder))
    ok = len(loaded) == len(rows)
    close_local_server(uri)
    return {"retriever_add_s": round(t_add, 2), "save_s": round(t_save, 3), "load_s": round(t_load, 2), "loaded_ok": ok,
            "saved_files": sorted(p.name for p in Path(f"{tmp}/idx").iterdir()), "load": _load()}


# -- agreement ------------------------------------------------------------------------------------------
def _agreement(vectors: np.ndarray, queries: np.ndarray, k: int, tmp: str, name: str) -> dict:
    from pie_retriever.index import create_index
    from pie_retriever.index.milvus_index import MilvusIndex, close_local_server

    labels = np.arange(len(vectors), dtype=np.int64)
    faiss = create_index(vectors.shape[1], "flat", **_fp32_options())
    milvus = MilvusIndex(vectors.shape[1], uri=f"{tmp}/{name}.db", collection="c")
    for index in (faiss, milvus):
        for s in range(0, len(vectors), 10_000):
            index.add(labels[s:s + 10_000], vectors[s:s + 10_000])
    (fs, fi), (ms, mi) = faiss.search(queries, k), milvus.search(queries, k)
    close_local_server(f"{tmp}/{name}.db")
    same = (fi == mi).all(axis=1)
    tie = np.abs(np.diff(fs, axis=1)).min(axis=1) < 1e-6 if k > 1 else np.zeros(len(fs), bool)
    return {"pool": len(vectors), "queries": len(queries), "k": k, "identical_top_k": int(same.sum()),
            "differing_only_by_ties": int((~same & tie).sum()), "set_overlap": round(_recall(mi, fi, k), 4),
            "max_score_difference": float(np.abs(fs - ms).max())}


def _fp32_options() -> dict:
    from pie_retriever.index import index_class

    try:
        return index_class("flat").check_options({"vectors": "fp32"}, "flat")
    except ValueError:
        return {}


def _real_vectors(encoder: Any, texts: list[str], tag: str) -> tuple[np.ndarray, dict]:
    """The default model's vectors of ``texts``, cached in runs/scale/ by fingerprint (with the time they took)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{tag}-{len(texts)}-{encoder.fingerprint}.npy"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return np.load(path), {**json.loads(meta.read_text()), "cached": True}
    vectors, seconds = _timed(lambda: encoder.encode_documents(texts, show_progress=True))
    info = {"encode_s": round(seconds, 1), "texts_per_s": round(len(texts) / seconds, 1), "load": _load()}
    np.save(path, vectors)
    meta.write_text(json.dumps(info))
    return vectors, {**info, "cached": False}


def section_agreement(args: argparse.Namespace) -> dict:
    from pie_retriever._threads import apply_threads
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    encoder = _default_encoder()
    apply_threads(None, 2)
    out: dict[str, Any] = {"model": encoder.model_spec}
    tmp = tempfile.mkdtemp(prefix="agree-")
    try:
        pool = encoder.encode_documents([d.instruction for d in load_bundled_pool()])
        queries = encoder.encode_queries([q.instruction for q in load_bundled_queries()])
        out["bundled_pool"] = _agreement(pool, queries, 4, tmp, "bundled")
        rows = templated(args.agree_n + 1000, seed=2)
        vectors, info = _real_vectors(encoder, [t for t, _ in rows], "templated")
        out["templated"] = {**_agreement(vectors[:args.agree_n], vectors[args.agree_n:], 4, tmp, "templated"), "encoding": info}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- the tables of docs/scale.md ------------------------------------------------------------------------
DOC = ROOT / "docs" / "scale.md"
_NAMES = {"milvus_lite_flat": "Milvus Lite, FLAT", "milvus_lite_hnsw": "Milvus Lite, HNSW", "faiss_flat_fp32": "faiss flat, fp32",
          "faiss_flat_default": "faiss flat, fp16 (default)", "faiss_hnsw_default": "faiss HNSW, fp16 (default)"}


def _index_table(m: dict) -> list[str]:
    lines = [f"At {m['n']:,} vectors ({m['dim']}-d; {m['vectors']}), {m['queries']:,} queries, exact = numpy brute force:", "",
             "| index | build (add all) | one query, median / p90 | batched ({} per call), per query | recall@4 | recall@10 | load avg |".format(
                 next(iter(m["indexes"].values()))["batch"]),
             "|---|---|---|---|---|---|---|"]
    for key in ("milvus_lite_flat", "faiss_flat_fp32", "faiss_flat_default", "milvus_lite_hnsw", "faiss_hnsw_default"):
        r = m["indexes"].get(key)
        if r:
            lines.append(f"| {_NAMES[key]} | {r['build_s']:.1f} s | {r['single_query_ms_median']:,.1f} / {r['single_query_ms_p90']:,.1f} ms | "
                         f"{r['batched_query_ms_per_query']:.2f} ms | {r['recall@4']:.3f} | {r['recall@10']:.3f} | {r['load']} |")
    f, p = m["filtered_query"], m["persistence"]
    lines += ["", f"Filtered query on Milvus Lite FLAT (`task` = one of 14 tasks, {f['allowed']:,} allowed): pushed down as "
              f"`meta_task in [...]` {f['pushed_down_ms_median']:,.0f} ms, sent as the id list {f['id_list_ms_median']:,.0f} ms (medians of 10).",
              f"A Milvus-backed `PIERetriever` of {m['n']:,} demonstrations (vectors precomputed): `add` {p['retriever_add_s']:.0f} s, "
              f"`save` {p['save_s']:.1f} s (files: {', '.join(p['saved_files'])}), `load` {p['load_s']:.0f} s (it reads every id and "
              "vector back to check them)."]
    return lines


def _engine_table(e: dict) -> list[str]:
    lines = ["| encoder, texts | one process | Ray, 2 actors × 1 CPU | Ray / one process (throughput) | vectors identical | load avg |",
             "|---|---|---|---|---|---|"]
    for key, name in (("default_model", "default model"), ("hashing", "hashing encoder (no model: the pipeline's own cost)")):
        r = e[key]
        lines.append(f"| {name}, {r['n']:,} | {r['single_process_s']:.1f} s ({r['single_texts_per_s']:,.1f}/s) | {r['ray_s']:.1f} s "
                     f"({r['ray_texts_per_s']:,.1f}/s) | {r['ray_vs_single_throughput']:.2f} | {'yes' if r['identical_vectors'] else 'NO'} | "
                     f"{r['load'][0]}–{r['load'][1]} |")
    return lines


def _agreement_table(a: dict) -> list[str]:
    lines = ["| pool | queries | identical top-4 | differ only by a tie | top-4 set overlap | max score difference |", "|---|---|---|---|---|---|"]
    for key, name in (("bundled_pool", "bundled pool"), ("templated", "templated instructions")):
        r = a.get(key)
        if r:
            lines.append(f"| {name}, {r['pool']:,} | {r['queries']:,} | {r['identical_top_k']:,} | {r['differing_only_by_ties']} | "
                         f"{r['set_overlap']:.4f} | {r['max_score_difference']:.1e} |")
    return lines


def render(result: dict) -> str:
    s = result["startup"]
    lines = ["Measured with `nice -n 10 python benchmarks/scale.py` (→ `results/scale.json`, `--render` rewrites this block) on 2 "
             "shared cores while other developers' jobs ran: the load average is given per row, and every time here is "
             "inflated by it. Versions: " + ", ".join(f"{k} {v}" for k, v in result["environment"]["versions"].items()) + ".", "",
             "**Start-up costs** (load average {}): Milvus Lite, a new database file + collection + insert + search: {:.1f} s. "
             "Ray: `ray.init(num_cpus=2)` {:.1f} s; an actor pool's first batch {:.1f} s with the hashing encoder and {:.1f} s "
             "with the default model (each actor loads it); `ray.shutdown()` {:.1f} s.".format(
                 s["load_before"], s["milvus_lite_first_collection_s"], s["ray_init_s"], s["ray_actor_pool_first_batch_hashing_s"],
                 s["ray_actor_pool_first_batch_default_model_s"], s["ray_shutdown_s"]), ""]
    lines += ["**Milvus Lite vs faiss.**", "", *_index_table(result["milvus"]), ""]
    lines += ["**Ray Data (local) vs one process** (encoding only; one process uses 2 torch threads):", "", *_engine_table(result["encode"]), ""]
    if "agreement" in result:
        lines += ["**Top-4 agreement, Milvus Lite FLAT vs faiss flat (fp32)**, default model:", "", *_agreement_table(result["agreement"])]
        enc = result["agreement"].get("templated", {}).get("encoding")
        if enc:
            lines += ["", f"(Encoding the 11,000 templated texts once with the default model took {enc['encode_s']:.0f} s, "
                      f"{enc['texts_per_s']}/s at load average {enc['load']}; cached in `runs/scale/`.)"]
    return "\n".join(lines)


def write_doc(result: dict) -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- scale:start -->", "<!-- scale:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    DOC.write_text(f"{head}{start}\n{render(result)}\n{end}{tail}", encoding="utf-8")


SECTIONS = {"startup": section_startup, "encode": section_encode, "milvus": section_milvus, "agreement": section_agreement}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    p.add_argument("--n", type=int, default=100_000, help="vectors in the milvus section and hashing texts in encode")
    p.add_argument("--model-n", type=int, default=2_000, help="instructions the default model encodes in the encode section")
    p.add_argument("--agree-n", type=int, default=10_000, help="templated pool size of the agreement section")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("-o", "--output", default=str(ROOT / "results" / "scale.json"))
    p.add_argument("--render", action="store_true", help="only rewrite the figures block of docs/scale.md from the JSON")
    args = p.parse_args(argv)
    out_path = Path(args.output)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    if args.render:
        write_doc(result)
        return 0
    from pie_retriever._util import library_versions

    result["environment"] = {"cpus": os.cpu_count(), "versions": library_versions(["pymilvus", "milvus-lite", "ray", "faiss-cpu", "torch"]),
                             "note": "2 shared cores; other developers' jobs were running (see each section's load average)"}
    for name in args.sections.split(","):
        print(f"== {name}", flush=True)
        result[name] = {**SECTIONS[name](args), "command": " ".join(["python benchmarks/scale.py", *sys.argv[1:]])}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=2))
        print(json.dumps(result[name], indent=1)[:3000], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
