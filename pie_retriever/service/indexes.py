"""The served indexes: one slot per name (fixed at start), loaded with its write-ahead log replayed; serialized
durable writes; atomic reload (a new slot replaces the old one; requests holding the old one finish on it)."""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pie_retriever.errors import DuplicateIdError, UnknownIdError
from pie_retriever.service.durability import WriteAheadLog, checkpoint, replay, wal_path

logger = logging.getLogger(__name__)


@dataclass
class IndexSlot:
    name: str
    folder: Path
    retriever: Any
    wal: WriteAheadLog
    last_write: str | None = None
    generation: int = 0

    def info(self) -> dict[str, Any]:
        cfg = self.retriever.encoder.config()
        with self.retriever.snapshot() as (demos, _):
            tasks = sorted({str(d.metadata["task"]) for d in demos.values() if isinstance(d.metadata, dict) and "task" in d.metadata})
        precision = cfg.get("precision") or cfg.get("quantize") or ("int8" if cfg.get("type") == "onnx" else "fp32")
        return {"name": self.name, "size": len(self.retriever), "model": str(cfg.get("model", cfg.get("type"))),
                "encoder": str(cfg.get("type")), "precision": str(precision), "index": self.retriever.index.kind,
                "tasks": len(tasks), "last_write": self.last_write, "generation": self.generation}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def load_slot(name: str, folder: Path, *, read_only: bool = False, generation: int = 0) -> IndexSlot:
    """Load the folder, replay its log, and (when the log had records and the server may write) checkpoint."""
    from pie_retriever.retrieval.retriever import PIERetriever

    retriever = PIERetriever.load(folder)
    wal = WriteAheadLog(wal_path(folder))
    records = wal.records(truncate=not read_only)  # a read replica never writes the folder or its log
    if records:
        changed = replay(retriever, records)
        logger.info("Index %s: replayed %d logged writes (%d changed the pool).", name, len(records), changed)
        if not read_only:
            checkpoint(retriever, folder, wal)
    return IndexSlot(name, folder, retriever, wal, generation=generation)


@dataclass
class Registry:
    """Name → slot. Writes to one index are serialized (its lock) so the log order is the apply order."""

    folders: dict[str, Path]
    read_only: bool = False
    slots: dict[str, IndexSlot] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=dict)

    def load_all(self) -> None:
        for name, folder in self.folders.items():
            self.locks[name] = threading.Lock()
            self.slots[name] = load_slot(name, folder, read_only=self.read_only)

    def get(self, name: str) -> IndexSlot:
        slot = self.slots.get(name)
        if slot is None:
            msg = f"No index named {name!r}; served: {sorted(self.slots)}."
            raise UnknownIdError(msg)
        return slot

    def add(self, name: str, demos: list[dict[str, Any]]) -> list[str]:
        """Add and log durably; return the ids. Ids are given here (the log must name them for replay)."""
        with self.locks[name]:
            slot = self.get(name)
            r = slot.retriever
            for d in demos:
                d.setdefault("id", None)
                if d["id"] is None:
                    d["id"] = f"svc-{uuid.uuid4().hex[:16]}"
            taken = [d["id"] for d in demos if d["id"] in r]
            if taken:
                msg = f"Duplicate demonstration id {taken[0]!r}; ids must be unique. Nothing was added."
                raise DuplicateIdError(msg)
            ids = r.add(demos)
            try:
                slot.wal.append({"op": "add", "demos": demos})
            except Exception:
                r.delete([i for i in dict.fromkeys(ids) if i in {d["id"] for d in demos} and i in r])
                raise
            slot.last_write = _now()
            return ids

    def delete(self, name: str, ids: list[str]) -> int:
        with self.locks[name]:
            slot = self.get(name)
            r = slot.retriever
            missing = [i for i in dict.fromkeys(ids) if i not in r]
            if missing:
                msg = f"Unknown demonstration id(s) {missing[:5]}; nothing was deleted."
                raise UnknownIdError(msg)
            removed = [r.get(i) for i in dict.fromkeys(ids)]
            n = r.delete(ids)
            try:
                slot.wal.append({"op": "delete", "ids": list(dict.fromkeys(ids))})
            except Exception:
                r.add(removed)
                raise
            slot.last_write = _now()
            return n

    def reload(self, names: list[str] | None = None) -> dict[str, int]:
        """Load each folder as it is on disk now (plus its log) and swap it in; writes wait meanwhile."""
        done = {}
        for name in names or list(self.slots):
            self.get(name)
            with self.locks[name]:
                old = self.slots[name]
                new = load_slot(name, old.folder, read_only=self.read_only, generation=old.generation + 1)
                new.last_write = old.last_write
                self.slots[name] = new  # one assignment: readers see the old slot or the new one
                done[name] = len(new.retriever)
        return done
