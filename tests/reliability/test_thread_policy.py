"""One thread policy (issue 29 item 10): overlapping torch_threads blocks never leave torch at another block's
count, and threads_for (faiss + threadpoolctl) lives in the same module."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from pie_retriever import _threads  # noqa: E402
from pie_retriever.downstream import _threads as old_home  # noqa: E402


def test_overlapping_blocks_restore_the_original_count():
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def a():  # a single query: 1 thread
            with _threads.torch_threads(None, 1) as n:
                seen["a"] = n
                a_in.set()
                b_in.wait(5)
            a_out.set()

        def b():  # a batch with an explicit count, entering while a runs and leaving after it
            a_in.wait(5)
            with _threads.torch_threads(2, 100) as n:
                seen["b"] = n
                seen["during_b"] = torch.get_num_threads()
                b_in.set()
                a_out.wait(5)

        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen["a"] == 1 and seen["b"] == 1 and seen["during_b"] == 1  # b did not flip the count under a
        assert torch.get_num_threads() == 2  # the old per-call restore left 1 here
    finally:
        torch.set_num_threads(original)


def test_threads_for_is_the_same_policy():
    import faiss

    assert old_home.threads_for is _threads.threads_for
    before = faiss.omp_get_max_threads()
    with _threads.threads_for(10):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before
