"""A concurrency stress run of one PIERetriever: readers, a writer and a saver at once, every hit checked.

Used by the test suite (small, bounded) and by ``benchmarks/stress.py`` (larger). Readers call
``retrieve`` (plain, filtered, MMR) and ``retrieve_batch``; each hit's score must equal the cosine of the
query with *that* demonstration's own vector (re-encoded independently), a filtered hit must pass the
filter, and no call may raise. The writer adds and deletes; the saver saves and reloads the index,
checking that every saved folder loads and is consistent.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pie_retriever.types import Demonstration  # absolute: benchmarks/stress.py runs this file against older checkouts

N_TASKS = 20


@dataclass
class StressReport:
    """Counts of one stress run: everything but ``queries``/``writes``/``saves`` must be zero."""

    index: str
    queries: int = 0
    checked: int = 0
    writes: int = 0
    saves: int = 0
    wrong_scores: int = 0
    filter_violations: int = 0
    empty_results: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.wrong_scores or self.filter_violations or self.empty_results or self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "queries": self.queries, "checked": self.checked, "writes": self.writes, "saves": self.saves,
                "wrong_scores": self.wrong_scores, "filter_violations": self.filter_violations,
                "empty_results": self.empty_results, "exceptions": len(self.errors), "first_errors": self.errors[:3],
                "seconds": round(self.seconds, 2)}


def make_pool(n: int, seed: int = 0) -> list[Demonstration]:
    rng = random.Random(seed)
    verbs = ["write", "summarize", "translate", "classify", "extract", "rewrite", "explain", "list", "answer", "sort"]
    topics = ["ocean", "taxes", "cats", "rockets", "gardens", "music", "chess", "bread", "rivers", "code"]
    return [Demonstration(f"{rng.choice(verbs)} a note about {rng.choice(topics)} number {i}", id=f"d{i}",
                          metadata={"task": f"t{i % N_TASKS}"}) for i in range(n)]


class _Checker:
    def __init__(self, retriever: Any, report: StressReport, check_every: int) -> None:
        self.r, self.report, self.lock = retriever, report, threading.Lock()
        self.check_every, self._n = check_every, 0
        self._vectors: dict[str, np.ndarray] = {}  # text -> its own vector, encoded independently once

    def _vector(self, text: str, query: bool) -> np.ndarray:
        key = ("q:" if query else "d:") + text
        v = self._vectors.get(key)
        if v is None:
            enc = self.r.encoder.encode_queries if query else self.r.encoder.encode_documents
            v = self._vectors[key] = enc([text])[0]
        return v

    def check(self, query: str, hits: list, task: str | None = None) -> None:
        with self.lock:
            self.report.queries += 1
            self.report.empty_results += int(not hits)
            self._n += 1
            if self._n % self.check_every:
                return  # most results are only counted: checking holds the GIL and would damp the races
            self.report.checked += 1
        qv = self._vector(query, True)
        wrong = bad_filter = 0
        if hits:
            docs = np.stack([self._vector(h.demonstration.text(self.r.embed_fields), False) for h in hits])
            wrong = int((np.abs(docs @ qv - np.array([h.score for h in hits])) > 1e-3).sum())
        if task is not None:
            bad_filter = sum(h.demonstration.metadata.get("task") != task for h in hits)
        with self.lock:
            self.report.wrong_scores += wrong
            self.report.filter_violations += bad_filter

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.report.errors.append(f"{where}: {type(exc).__name__}: {exc}"[:300])


def _reader(c: _Checker, seed: int, stop: float) -> None:
    rng = random.Random(seed)
    verbs, topics = ["write", "translate", "explain"], ["cats", "taxes", "music", "rivers"]
    batch = [f"{rng.choice(verbs)} something about {rng.choice(topics)} {i}" for i in range(32)]
    while time.perf_counter() < stop:
        q = f"{rng.choice(verbs)} something about {rng.choice(topics)}"
        mode = rng.randrange(4)
        try:
            if mode == 0:
                c.check(q, c.r.retrieve(q, k=8))
            elif mode == 1:  # a long search: the window in which a concurrent write could corrupt it is wide
                for query, hits in zip(batch, c.r.retrieve_batch(batch, k=8)):
                    c.check(query, hits)
            elif mode == 2:
                task = f"t{rng.randrange(N_TASKS)}"
                c.check(q, c.r.retrieve(q, k=8, filter={"task": task}), task)
            else:
                c.check(q, c.r.retrieve(q, k=8, mmr=True))
        except Exception as exc:
            c.error(f"reader mode {mode}", exc)


def _writer(c: _Checker, seed: int, stop: float, first_id: int) -> None:
    rng = random.Random(seed)
    next_id = first_id
    while time.perf_counter() < stop:
        try:
            new = make_pool(64, seed=next_id)
            for d in new:
                d.id = f"w{next_id}"
                d.metadata["task"] = f"t{rng.randrange(N_TASKS)}"
                next_id += 1
            c.r.add(new)
            ids = [d.id for d in c.r.demonstrations[:200]]
            c.r.delete(rng.sample(ids, 60))
            with c.lock:
                c.report.writes += 2
        except Exception as exc:
            c.error("writer", exc)


def _saver(c: _Checker, folder: Path, stop: float) -> None:
    from pie_retriever.retrieval.retriever import PIERetriever

    while time.perf_counter() < stop:
        try:
            c.r.save(folder)
            loaded = PIERetriever.load(folder, encoder=c.r.encoder, allow_remote=True)  # our own save (a Milvus .db lives beside)
            if len(loaded) != len(loaded.index):
                raise AssertionError(f"loaded {len(loaded)} demonstrations but {len(loaded.index)} vectors")
            with c.lock:
                c.report.saves += 1
        except Exception as exc:
            c.error("saver", exc)


def run_stress(retriever: Any, *, seconds: float = 5.0, readers: int = 4, writer: bool = True, saver: bool = True,
               seed: int = 0, switch_interval: float = 0.005, check_every: int = 4) -> StressReport:
    """Run readers (+ writer, + saver) on ``retriever`` for ``seconds``; return the counts.

    Every result is counted and checked for emptiness; one in ``check_every`` is re-scored against its
    demonstrations' own vectors and its filter (checking is Python work that holds the GIL, so checking
    every result would leave the index calls too little overlap to show races).
    """
    import sys

    report = StressReport(index=getattr(retriever.index, "kind", "?"))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    c = _Checker(retriever, report, check_every)
    tmp = Path(tempfile.mkdtemp(prefix="pie-stress-"))
    t0 = time.perf_counter()
    stop = t0 + seconds
    threads = [threading.Thread(target=_reader, args=(c, seed + i, stop)) for i in range(readers)]
    if writer:
        threads.append(threading.Thread(target=_writer, args=(c, seed + 100, stop, 10_000_000)))
    if saver:
        threads.append(threading.Thread(target=_saver, args=(c, tmp / "idx", stop)))
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = time.perf_counter() - t0
    return report
