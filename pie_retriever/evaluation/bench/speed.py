"""Speed section: build throughput, query latency and memory of the default model + faiss against BM25.

Everything here measures *in the current process, in the same run*, so figures can be read as ratios
against baselines taken under the same machine load (a shared CPU makes absolute times drift).

* :class:`PrecomputedEncoder` — serves stored document vectors so a large synthetic pool can be indexed
  without re-encoding it (queries still go through the real encoder).
* :func:`run_speed` — the whole section: FLOP/s and encoding paths (:mod:`~pie_retriever.evaluation.bench.flops`),
  build throughput, single-query latency p50/p95 and batched queries/s for PIE and BM25 at each pool size,
  RSS per demonstration (:mod:`~pie_retriever.evaluation.bench.memory`), peak RSS.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pie_retriever._util import DEFAULT_K
from pie_retriever.encoders.base import l2_normalize
from pie_retriever.errors import ConfigError
from pie_retriever.evaluation.bench.flops import encode_comparison, matmul_flops
from pie_retriever.evaluation.bench.memory import memory_probe, peak_rss_bytes, process_peak_rss_bytes, reset_peak_rss, rss_bytes
from pie_retriever.evaluation.bench.storage import STORAGES
from pie_retriever.evaluation.bench.timing import PrecomputedEncoder, RecordingEncoder, batched_qps, latency_stats

__all__ = [
    "PrecomputedEncoder",
    "RecordingEncoder",
    "batched_qps",
    "latency_stats",
    "perturbed_copies",
    "run_speed",
    "run_speed_section",
    "speed_texts",
    "synthetic_texts",
]

#: Appended to base instructions to make distinct synthetic pool entries beyond the base set's size.
SUFFIXES = ("", " Keep it short.", " Use simple words.", " Explain your reasoning.", " Answer in one paragraph.",
            " Be specific.", " Write it for a child.", " Give two options.", " Be formal.", " Add an example.")


def _dir_bytes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in Path(path).iterdir() if p.is_file()}


def synthetic_texts(base: Sequence[str], n: int) -> list[str]:
    """``n`` distinct pool texts: the base instructions first, then the same with suffixes (``SUFFIXES``) and,
    past that, a numbered variant."""
    base = list(dict.fromkeys(t.strip() for t in base if t and t.strip()))
    if not base:
        msg = "synthetic_texts needs at least one base text."
        raise ConfigError(msg)
    out: list[str] = []
    round_ = 0
    while len(out) < n:
        suffix = SUFFIXES[round_] if round_ < len(SUFFIXES) else f" (variant {round_})"
        out.extend(t + suffix for t in base[: n - len(out)])
        round_ += 1
    return out


def perturbed_copies(vectors: np.ndarray, n: int, *, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: the given ones, then copies with Gaussian noise (std ``noise``/√d per coordinate,
    i.e. cosine ≈ 1/√(1+noise²) to their source), renormalised."""
    rng = np.random.default_rng(seed)
    d = vectors.shape[1]
    reps = -(-n // len(vectors))
    out = np.tile(vectors, (reps, 1))[:n].copy()
    out[len(vectors):] += rng.standard_normal((n - min(n, len(vectors)), d)).astype(np.float32) * (noise / np.sqrt(d))
    return l2_normalize(out)


# -- the section -----------------------------------------------------------------------------------
def _reference_flops(encoder: Any, matmul_seconds: float) -> dict[str, dict[str, Any]]:
    """fp32 / bf16 square matmuls and a model-shaped matmul in the encoder's dtype."""
    hidden = int(getattr(getattr(getattr(encoder, "model", None), "config", None), "hidden_size", 0) or getattr(encoder, "dim", 384))
    from pie_retriever.encoders.transformer import bf16_is_native

    enc_dtype = "bfloat16" if getattr(encoder, "use_bf16", False) else "float32"
    # bf16 only where it is native: emulated, one 2048² bf16 matmul takes minutes on an AVX2-only CPU
    dtypes = ("float32", "bfloat16") if bf16_is_native() or enc_dtype == "bfloat16" else ("float32",)
    out = {dt: matmul_flops(dt, min_seconds=matmul_seconds / 2) for dt in dtypes}
    out["model_shaped"] = matmul_flops(enc_dtype, m=64 * 64, k=hidden, n=4 * hidden, min_seconds=matmul_seconds / 4)
    return out


def measure_flops(encoder: Any, texts: Sequence[str], *, rounds: int, matmul_seconds: float, disable: bool | None) -> dict[str, Any]:
    """The CPU's reference FLOP/s, the encoder's achieved FLOP/s, and core vs naive encoding on ``texts``.

    The reference is measured before and after the encoding runs and the best is kept: on a shared machine a
    single measurement can land in a busy moment and understate what the CPU can do.
    """
    from tqdm.auto import tqdm

    from pie_retriever.encoders.transformer import bf16_is_native

    variants = ("core", "naive", "sorted_fp32", "unsorted_bf16") if bf16_is_native() else ("core", "naive", "sorted_fp32")
    bar = tqdm(total=2 + len(variants) * rounds, desc="Speed: FLOP/s and encode paths", disable=disable)
    mm = _reference_flops(encoder, matmul_seconds)
    bar.update(1)
    cmp = encode_comparison(encoder, texts, prompt="pie", rounds=rounds, variants=variants, progress=bar)
    for key, again in _reference_flops(encoder, matmul_seconds).items():
        again["measurements"] = 2
        if again["flop_per_s"] > mm[key]["flop_per_s"]:
            mm[key] = again
    bar.update(1)
    bar.close()
    mm_model = mm.pop("model_shaped")
    ref_dtype = "bfloat16" if cmp["core_uses_bf16"] else "float32"
    core_fps = cmp["flops"]["core"] / cmp["seconds"]["core"]
    naive_fps = cmp["flops"]["naive"] / cmp["seconds"]["naive"]
    return {
        "matmul": dict(mm),
        "matmul_model_shaped": mm_model,
        "encode_paths": cmp,
        "encoder_flops": {
            "core_flop_per_s": core_fps,
            "core_fraction_of_matmul": core_fps / mm[ref_dtype]["flop_per_s"],
            "reference_dtype": ref_dtype,
            "core_fraction_of_model_shaped_matmul": core_fps / mm_model["flop_per_s"],
            "naive_flop_per_s": naive_fps,
            "naive_fraction_of_fp32_matmul": naive_fps / mm["float32"]["flop_per_s"],
            "flops_per_text_core": cmp["flops"]["core"] / len(texts),
            "flops_per_text_naive": cmp["flops"]["naive"] / len(texts),
        },
    }


def _saved_bytes(save: Callable[[Path], Any], name: str) -> dict[str, int]:
    """Bytes of each file ``save(folder)`` writes into a temporary ``folder``."""
    tmp = Path(tempfile.mkdtemp(prefix="pie-bench-"))
    try:
        save(tmp / name)
        return _dir_bytes(tmp / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Workload:
    """The queries and options shared by every pool size of one :func:`run_speed` call."""

    def __init__(self, encoder: Any, single_q: list[str], batch_q: list[str], k: int, encode_limit: int, seed: int,
                 show_progress: bool | None) -> None:
        self.encoder, self.single_q, self.batch_q, self.k = encoder, single_q, batch_q, k
        self.encode_limit, self.seed, self.show_progress = encode_limit, seed, show_progress
        self.real_vectors: np.ndarray | None = None  # document vectors of the largest real build so far
        self.encode_rate: float | None = None  # its measured documents/s


def _pie_row(w: _Workload, n: int, texts: list[str]) -> dict[str, Any]:
    """Build, save and query a PIERetriever over ``texts`` (encoding measured, or extrapolated past ``encode_limit``)."""
    from pie_retriever.retrieval.retriever import PIERetriever

    demos = [{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)]
    gc.collect()
    rss0 = rss_bytes()
    measured = n <= w.encode_limit
    if measured:
        wrapper: RecordingEncoder = RecordingEncoder(w.encoder)
    else:
        assert w.real_vectors is not None, "encode_limit must be >= the smallest pool size"
        wrapper = PrecomputedEncoder(w.encoder, perturbed_copies(w.real_vectors, n, seed=w.seed))
    t0 = time.perf_counter()
    pie = PIERetriever.from_demonstrations(demos, wrapper, show_progress=w.show_progress is not False and measured and n >= 2000)
    total_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    if measured:
        encode_s = wrapper.encode_s
        w.encode_rate = n / encode_s
        w.real_vectors = np.concatenate(wrapper.vectors)
    else:
        encode_s = n / w.encode_rate  # extrapolated from the largest measured build
    index_s = total_s - (wrapper.encode_s if measured else 0.0)
    build_s = encode_s + index_s
    files = _saved_bytes(pie.save, "idx")
    qv = w.encoder.encode_queries(w.single_q[:1], show_progress=False)
    return {
        "encode_measured": measured,
        "encode_s": encode_s,
        "index_s": index_s,
        "build_s": build_s,
        "build_demos_per_s": n / build_s,
        "encode_demos_per_s": n / encode_s,
        "index_demos_per_s": n / index_s,
        "rss_delta_bytes": rss1 - rss0,
        "rss_bytes_per_demo": (rss1 - rss0) / n,
        "index_file_bytes_per_demo": files.get("index.faiss", 0) / n,
        "saved_bytes_per_demo": sum(files.values()) / n,
        "single": latency_stats(lambda q: pie.retrieve(q, k=w.k), w.single_q),
        "search_only": latency_stats(lambda q: pie.index.search(qv, w.k), w.single_q),
        "batched": batched_qps(lambda qs: pie.retrieve_batch(qs, k=w.k), w.batch_q),
    }


def _bm25_row(w: _Workload, n: int, texts: list[str]) -> dict[str, Any]:
    """Build, save and query a BM25Retriever over ``texts`` (always built for real)."""
    from pie_retriever.retrieval.bm25 import BM25Retriever

    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    bm = BM25Retriever([{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)])
    bm_build = time.perf_counter() - t0
    rss1 = rss_bytes()
    files = _saved_bytes(lambda folder: bm.model.save(str(folder)), "bm25")
    return {
        "build_s": bm_build,
        "build_demos_per_s": n / bm_build,
        "rss_delta_bytes": rss1 - rss0,
        "rss_bytes_per_demo": (rss1 - rss0) / n,
        "saved_bytes_per_demo": sum(files.values()) / n,
        "single": latency_stats(lambda q: bm.retrieve(q, k=w.k), w.single_q),
        "batched": batched_qps(lambda qs: bm.retrieve_batch(qs, k=w.k), w.batch_q),
    }


def _probe_memory(w: _Workload, row: dict[str, Any], texts: list[str], probe: bool) -> None:
    """RSS retained by each built retriever (and its peak while building), each measured in a fresh process."""
    n = row["n"]
    vectors = None
    if probe:
        vectors = w.real_vectors[:n] if row["pie"]["encode_measured"] else perturbed_copies(w.real_vectors, n, seed=w.seed)
    for kind in ("pie", "bm25"):
        row[kind]["rss_in_process_bytes_per_demo"] = row[kind].pop("rss_bytes_per_demo")
        row[kind]["rss_bytes_per_demo"] = None
        if probe:
            got = memory_probe(kind, texts, vectors if kind == "pie" else None)
            row[kind].update({"rss_retained_bytes": got["retained"], "rss_bytes_per_demo": got["retained"] / n,
                              "rss_build_peak_bytes": got["peak"]})


def _ratios(p: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    return {
        "single_p50_pie_over_bm25": p["single"]["p50_ms"] / b["single"]["p50_ms"],
        "single_p95_pie_over_bm25": p["single"]["p95_ms"] / b["single"]["p95_ms"],
        "batched_qps_pie_over_bm25": p["batched"]["queries_per_s"] / b["batched"]["queries_per_s"],
        "build_rate_pie_over_bm25": p["build_demos_per_s"] / b["build_demos_per_s"],
    }


def _warm_up(w: _Workload, base_texts: Sequence[str]) -> None:
    """A small untimed build of each kind: lazy imports, stopword lists, kernels."""
    from pie_retriever.retrieval.bm25 import BM25Retriever
    from pie_retriever.retrieval.retriever import PIERetriever

    warm = [{"id": f"w{i}", "instruction": t} for i, t in enumerate(base_texts[:64])]
    PIERetriever.from_demonstrations(warm, w.encoder, show_progress=False).retrieve_batch(w.single_q[:2], k=w.k)
    BM25Retriever(warm).retrieve_batch(w.single_q[:2], k=w.k)


def run_speed(
    encoder: Any,
    base_texts: Sequence[str],
    query_texts: Sequence[str],
    *,
    sizes: Sequence[int] = (1_000, 10_000, 100_000),
    encode_limit: int = 10_000,
    n_single: int = 100,
    batch_queries: int = 256,
    compare_texts: int = 1024,
    compare_rounds: int = 2,
    matmul_seconds: float = 1.0,
    k: int = DEFAULT_K,
    seed: int = 0,
    memory_sizes: Sequence[int] | None = None,
    show_progress: bool | None = None,
    backends: Sequence[str] = (),
    storages: Sequence[str] = STORAGES,
    hog: int = 2,
) -> dict[str, Any]:
    """Speed and memory of ``encoder`` + faiss (PIERetriever) against BM25 (bm25s) at each pool size.

    With ``backends`` (keys of :data:`~pie_retriever.evaluation.bench.speed_backends.BACKENDS`), the pool of the largest real
    build is also served by each backend × storage option, idle and under ``hog`` busy-loop processes
    (``result["backends"]``).

    Pools of up to ``encode_limit`` texts are built for real (every text encoded). Larger pools reuse the
    vectors of the largest real build as perturbed copies (:func:`perturbed_copies`) and their build time is
    *encoding time extrapolated from the measured rate* plus the *measured* indexing time; the result says so
    in ``encode_measured``. BM25 always indexes the full synthetic pool for real.
    """
    from tqdm.auto import tqdm

    disable = None if show_progress is not False else True
    sizes = sorted(int(s) for s in sizes)
    encode_limit = max(int(encode_limit), sizes[0])  # the smallest pool is always encoded for real
    reset_ok = reset_peak_rss()
    baseline_rss = rss_bytes()
    queries = list(dict.fromkeys(q for q in query_texts if q.strip()))
    rng = np.random.default_rng(seed)
    single_q = [queries[i] for i in rng.permutation(len(queries))[:n_single]]
    batch_q = (queries * (-(-batch_queries // max(1, len(queries)))))[:batch_queries]
    w = _Workload(encoder, single_q, batch_q, k, encode_limit, seed, show_progress)
    result: dict[str, Any] = {"sizes": sizes, "k": k, "encode_limit": encode_limit, "peak_rss_reset": reset_ok}
    cmp_texts = [base_texts[i] for i in rng.permutation(len(base_texts))[:compare_texts]]
    result.update(measure_flops(encoder, cmp_texts, rounds=compare_rounds, matmul_seconds=matmul_seconds, disable=disable))
    result["query_encode"] = latency_stats(lambda q: encoder.encode_queries([q], show_progress=False), single_q)
    _warm_up(w, base_texts)
    per_size = []
    for n in tqdm(sizes, desc="Speed: pool sizes", unit="size", disable=disable):
        texts = synthetic_texts(base_texts, n)
        row: dict[str, Any] = {"n": n, "pie": _pie_row(w, n, texts)}
        gc.collect()
        row["bm25"] = _bm25_row(w, n, texts)
        gc.collect()
        _probe_memory(w, row, texts, memory_sizes is None or n in memory_sizes)
        row["ratios"] = _ratios(row["pie"], row["bm25"])
        per_size.append(row)
    result["per_size"] = per_size
    if backends:
        from pie_retriever.evaluation.bench.speed_backends import run_backends

        n = len(w.real_vectors)
        result["backends"] = run_backends(encoder, synthetic_texts(base_texts, n), w.real_vectors, single_q, batch_q,
                                          backends=backends, storages=storages, hog=hog, k=k)
    result["rss_baseline_bytes"] = baseline_rss
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["process_peak_rss_bytes"] = process_peak_rss_bytes()
    return result


def speed_texts(ieb: Path | None, seed: int) -> tuple[list[str], list[str], str]:
    """``(base pool texts, query texts, source description)``: IEB instructions when ``ieb`` has them, else the bundled pool."""
    from pie_retriever.pool.ieb import EFT_TEST, EFT_TRAIN_UNSUP, IFT_TEST, load_labelled, load_unlabelled
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    queries = [q.instruction for q in load_bundled_queries()]
    base: list[str] = []
    source = []
    if ieb is not None and (ieb / EFT_TRAIN_UNSUP).is_file():
        base += load_unlabelled(ieb / EFT_TRAIN_UNSUP)
        source.append("IEB eft_train_unsup")
    if ieb is not None and (ieb / EFT_TEST).is_file():
        base += load_labelled(ieb / EFT_TEST)[0]
        source.append("eft_test")
    if ieb is not None and (ieb / IFT_TEST).is_file():
        queries += load_labelled(ieb / IFT_TEST)[0]
    if not base:
        base = [d.instruction for d in load_bundled_pool()]
        source.append("the bundled pool (IEB not found)")
    base = list(dict.fromkeys(t.strip() for t in base if t.strip()))
    rng = np.random.default_rng(seed)
    base = [base[i] for i in rng.permutation(len(base))]
    return base, queries, " + ".join(source)


def run_speed_section(cfg: Any, encoders: Any = None) -> dict[str, Any]:
    """The speed section of a :class:`~pie_retriever.evaluation.bench.config.BenchConfig` with the default model."""
    from pie_retriever.evaluation.bench.cache import EncoderCache
    from pie_retriever.evaluation.bench.config import methods
    from pie_retriever.evaluation.ieb import resolve_ieb_dir

    encoders = encoders or EncoderCache()
    default = methods()["default"]
    encoder = encoders.get(default)
    base, queries, source = speed_texts(resolve_ieb_dir(cfg.ieb_dir, required=False), cfg.seed)
    memory_sizes = cfg.memory_sizes if cfg.memory_sizes is not None else ((max(cfg.sizes),) if cfg.quick else None)
    out = run_speed(
        encoder, base, queries, sizes=cfg.sizes, encode_limit=cfg.encode_limit, n_single=cfg.n_single,
        batch_queries=cfg.batch_queries, compare_texts=cfg.compare_texts, compare_rounds=cfg.compare_rounds,
        matmul_seconds=cfg.matmul_seconds, seed=cfg.seed, memory_sizes=memory_sizes, show_progress=cfg.show_progress,
        backends=cfg.backends, storages=cfg.storages, hog=cfg.hog,
    )
    out["model"] = default.model
    out["encoder"] = {k: v for k, v in encoder.config().items() if k not in ("prompt", "query_prompt")}
    out["encoder"]["prompt_is_pie"] = "task intention" in encoder.prompt
    out["index"] = "faiss flat (exact) behind IndexIDMap2, fp16 vectors (IndexScalarQuantizer; the default storage)"
    out["base_texts"] = {"source": source, "unique": len(base)}
    return out
