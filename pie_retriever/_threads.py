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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pie_retriever._util import check_int

__all__ = ["apply_threads", "available_cores", "resolve_threads", "torch_threads"]


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
    """Run a block with :func:`apply_threads` in force, then restore the previous thread count."""
    import torch

    before = torch.get_num_threads()
    try:
        yield apply_threads(threads, n_texts)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
