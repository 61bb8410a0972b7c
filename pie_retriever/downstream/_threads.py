"""Run small problems on one thread.

OpenMP and BLAS thread pools (faiss, scikit-learn's t-SNE, numpy) spin-wait for each other; on a busy
machine two threads on a problem of a few thousand rows can be 50× slower than one (measured here: t-SNE on
60 points 58 s with 2 threads under load vs 1.1 s with one; faiss KMeans on 90 points 0.5 s vs 7 ms).
Large problems keep every thread.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

#: Problems with fewer rows than this run single-threaded.
SMALL = 5000


@contextlib.contextmanager
def threads_for(n_rows: int) -> Iterator[None]:
    """One thread for OpenMP/BLAS (and faiss) while the block runs, when ``n_rows < SMALL``; else unchanged."""
    if n_rows >= SMALL:
        yield
        return
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - scikit-learn brings it
            yield
            return
        with threadpool_limits(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(previous)
