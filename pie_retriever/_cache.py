"""The library's cache folder and the inter-process lock that guards what is built into it once."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

logger = logging.getLogger(__name__)

__all__ = ["cache_dir", "file_lock"]


def cache_dir() -> Path:
    """``$PIE_RETRIEVER_CACHE``, else ``$XDG_CACHE_HOME/pie_retriever``, else ``~/.cache/pie_retriever``."""
    env = os.environ.get("PIE_RETRIEVER_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "pie_retriever"


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive lock across processes and threads (``filelock.FileLock``: ``flock`` on POSIX, ``msvcrt`` on
    Windows), on the file ``lock_path``. Logs once when it has to wait for another builder."""
    from filelock import FileLock, Timeout

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, is_singleton=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("Waiting for another process building into %s (lock %s)", lock_path.parent, lock_path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
