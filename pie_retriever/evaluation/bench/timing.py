"""Timing helpers shared by the speed measurements: encoders that record or replay document vectors, latency
percentiles of one-at-a-time calls, and queries/s of a batched call."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from pie_retriever.encoders.base import DelegatingEncoder
from pie_retriever.errors import ConfigError

__all__ = ["PrecomputedEncoder", "RecordingEncoder", "batched_qps", "latency_stats"]


class RecordingEncoder(DelegatingEncoder):
    """Wraps an encoder; remembers the document vectors it produced and the seconds spent encoding them."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.vectors: list[np.ndarray] = []
        self.encode_s = 0.0

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
            raise ConfigError(msg)
        v = self._stored[self._pos:self._pos + n]
        self._pos += n
        return v


def latency_stats(fn: Callable[[str], Any], queries: Sequence[str], *, warmup: int = 3) -> dict[str, float]:
    """Call ``fn(q)`` once per query (after ``warmup`` calls) and return p50/p95/p99/mean in milliseconds."""
    for q in list(queries)[:warmup]:
        fn(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000.0)
    arr = np.asarray(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "p99_ms": float(np.percentile(arr, 99)), "mean_ms": float(arr.mean()), "n": len(arr)}


def batched_qps(fn: Callable[[list[str]], Any], queries: Sequence[str], *, repeats: int = 2) -> dict[str, float]:
    queries = list(queries)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(queries)
        best = min(best, time.perf_counter() - t0)
    return {"queries_per_s": len(queries) / best, "batch": len(queries), "seconds": best}
