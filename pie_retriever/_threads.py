"""How many torch intra-op threads an encoding call should use.

Measured on a 2-core machine under load (8 runnable processes): one query took 1,439 ms with torch's default
of 2 intra-op threads and 35 ms with 1, because intra-op threads spin and wait on each other when the cores
are busy. A single short text gains nothing from splitting its matrix products anyway, while a batch of
texts keeps every core busy. Hence the automatic policy:

- ``threads`` given (``--threads N``): use exactly that;
- else one text (a single query): 1 thread;
- else (a batch: indexing, ``search --queries``, training): every core this process may run on.

:func:`resolve_threads` is the policy, :func:`apply_threads` sets it in torch and :func:`torch_threads`
sets it for a block and restores the previous value. Extend the policy here (one place), not in callers.

torch's thread count is one process-wide setting, so :func:`torch_threads` never flips it under another
thread's running block: the first block to enter sets it, blocks that enter meanwhile run with the count in
force, and the last one to leave restores the value from before the first (the old set-and-restore per call
could leave the process at another block's count when blocks overlapped).

OpenMP/BLAS pools outside torch (faiss, numpy, scikit-learn) follow the same rule through threadpoolctl:
:func:`threads_for` runs small problems on one thread (moved here from ``downstream/_threads.py``; measured:
t-SNE on 60 points 58 s with 2 threads under load vs 1.1 s with one; faiss KMeans on 90 points 0.5 s vs 7 ms).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from pie_retriever._util import check_int

__all__ = ["SMALL", "apply_threads", "available_cores", "resolve_threads", "threads_for", "torch_threads"]

#: Problems with fewer rows than this run single-threaded in :func:`threads_for`.
SMALL = 5000

_LOCK = threading.Lock()
_state = {"holders": 0, "saved": 0}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells it, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None, n_texts: int) -> int:
    """The intra-op thread count for encoding ``n_texts`` texts: ``threads`` if given, else the automatic policy."""
    if threads is not None:
        return check_int(threads, "threads")
    return 1 if n_texts <= 1 else available_cores()


def apply_threads(threads: int | None, n_texts: int) -> int:
    """Set torch's intra-op thread count by :func:`resolve_threads`; returns the count now in force."""
    import torch

    n = resolve_threads(threads, n_texts)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def torch_threads(threads: int | None, n_texts: int) -> Iterator[int]:
    """Run a block with :func:`apply_threads` in force, then restore the previous thread count; overlapping
    blocks (other threads) share the count the first one set (see the module docstring)."""
    import torch

    with _LOCK:
        if _state["holders"] == 0:
            _state["saved"] = torch.get_num_threads()
            n = apply_threads(threads, n_texts)
        else:
            n = torch.get_num_threads()
        _state["holders"] += 1
    try:
        yield n
    finally:
        with _LOCK:
            _state["holders"] -= 1
            if _state["holders"] == 0 and torch.get_num_threads() != _state["saved"]:
                torch.set_num_threads(_state["saved"])


@contextlib.contextmanager
def threads_for(n_rows: int) -> Iterator[None]:
    """One thread for OpenMP/BLAS (threadpoolctl) and faiss while the block runs, when ``n_rows < SMALL``."""
    if n_rows >= SMALL:
        yield
        return
    import faiss
    from threadpoolctl import threadpool_limits

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(previous)
