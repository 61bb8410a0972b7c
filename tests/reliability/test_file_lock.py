"""The cache's build lock is filelock's (issue 29 item 10): it serialises builders even where fcntl is missing."""

from __future__ import annotations

import builtins
import threading
import time

import filelock  # imported before fcntl is hidden: filelock picks its platform lock at import

from pie_retriever._cache import file_lock


def test_lock_serialises_threads_without_fcntl(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_fcntl(name, *args, **kwargs):
        if name == "fcntl":
            raise ImportError("No module named 'fcntl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fcntl)
    inside: list[int] = []
    overlaps: list[int] = []

    def builder(i: int) -> None:
        with file_lock(tmp_path / ".model.lock"):
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            time.sleep(0.15)
            inside.remove(i)

    threads = [threading.Thread(target=builder, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == []


def test_lock_is_held_inside_the_block(tmp_path):
    path = tmp_path / ".x.lock"
    with file_lock(path):
        other = filelock.FileLock(path, is_singleton=False)
        try:
            other.acquire(timeout=0)
            held = False
            other.release()
        except filelock.Timeout:
            held = True
    assert held
    with filelock.FileLock(path, timeout=0, is_singleton=False):
        pass  # released after the block
