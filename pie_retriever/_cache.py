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
    """Exclusive advisory lock across processes (``fcntl.flock``); a no-op where fcntl is missing."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        logger.warning("fcntl is unavailable: building %s without an inter-process lock", lock_path.parent)
        yield
        return
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("Waiting for another process building into %s (lock %s)", lock_path.parent, lock_path)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
