"""Durable writes: an append-only write-ahead log next to each served index, fsync'ed before a write is acknowledged.

The log of ``/data/pool.pie`` is ``/data/.pool.pie.wal.jsonl``: one JSON record per line,
``{"op": "add", "demos": [...]}`` (every demonstration with its id) or ``{"op": "delete", "ids": [...]}``.
A write is applied to the in-memory retriever, appended, flushed and ``fsync``'ed, and only then answered,
so a 2xx reply means the change is on disk. A line torn by a crash (never acknowledged) is cut off at the
next start. Records replay as set operations (add the ids not present, delete the ids present), so replaying
a log over an index that already holds some of it converges to the same pool; at start the replayed pool is
saved atomically (``PIERetriever.save``) and the log emptied (a checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pie_retriever.errors import IndexSaveError

logger = logging.getLogger(__name__)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def wal_path(index_dir: Path) -> Path:
    return index_dir.parent / f".{index_dir.name}.wal.jsonl"


class WriteAheadLog:
    """Append records with fsync; read them back, cutting off a torn tail."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self, *, truncate: bool = True) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (a crash mid-append) is truncated away (``truncate=False``: only skipped)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records, good = [], 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except ValueError:
                break
            if not isinstance(rec, dict) or rec.get("op") not in ("add", "delete"):
                break
            records.append(rec)
            good += len(line)
        if good < len(data) and truncate:
            logger.warning("Write-ahead log %s: cutting a torn tail of %d bytes (an unacknowledged write).", self.path, len(data) - good)
            with open(self.path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
        return records

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:  # a new file's name is durable once its folder is synced
                _fsync_dir(self.path.parent)
        except OSError as exc:
            msg = f"Cannot write the write-ahead log {self.path} ({exc.strerror}); the write was not applied."
            raise IndexSaveError(msg) from exc

    def clear(self) -> None:
        if self.path.exists():
            with open(self.path, "r+b") as fh:
                fh.truncate(0)
                os.fsync(fh.fileno())


def replay(retriever: Any, records: list[dict[str, Any]]) -> int:
    """Apply logged records as set operations; return how many records changed the pool."""
    changed = 0
    for rec in records:
        if rec["op"] == "add":
            todo = [d for d in rec["demos"] if d.get("id") not in retriever]
            if todo:
                retriever.add(todo)
                changed += 1
        else:
            present = [i for i in rec["ids"] if i in retriever]
            if present:
                retriever.delete(present)
                changed += 1
    return changed


def checkpoint(retriever: Any, index_dir: Path, wal: WriteAheadLog) -> None:
    """Save the pool atomically over the index folder, then empty the log (a crash between is harmless: replay is idempotent)."""
    retriever.save(index_dir)
    wal.clear()
