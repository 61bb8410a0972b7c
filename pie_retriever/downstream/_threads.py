"""Old home of :func:`threads_for`: the one thread policy now lives in :mod:`pie_retriever._threads`."""

from __future__ import annotations

from pie_retriever._threads import SMALL, threads_for

__all__ = ["SMALL", "threads_for"]
