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

from ..types import Demonstration

N_TASKS = 20


@dataclass
class StressReport:
    """Counts of one stress run: everything but ``queries``/``writes``/``saves`` must be zero."""

    index: str
    queries: int = 0
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
        return {"index": self.index, "queries": self.queries, "writes": self.writes, "saves": self.saves,
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
    def __init__(self, retriever: Any, report: StressReport) -> None:
        self.r, self.report, self.lock = retriever, report, threading.Lock()

    def check(self, query: str, hits: list, task: str | None = None) -> None:
        qv = self.r.encoder.encode_queries([query])[0]
        wrong = bad_filter = 0
        for h in hits:
            dv = self.r.encoder.encode_documents([h.demonstration.text(self.r.embed_fields)])[0]
            if abs(float(qv @ dv) - h.score) > 1e-3:
                wrong += 1
            if task is not None and h.demonstration.metadata.get("task") != task:
                bad_filter += 1
        with self.lock:
            self.report.queries += 1
            self.report.wrong_scores += wrong
            self.report.filter_violations += bad_filter
            self.report.empty_results += int(not hits)

    def error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.report.errors.append(f"{where}: {type(exc).__name__}: {exc}"[:300])


def _reader(c: _Checker, seed: int, stop: float) -> None:
    rng = random.Random(seed)
    while time.perf_counter() < stop:
        q = f"{rng.choice(['write', 'translate', 'explain'])} something about {rng.choice(['cats', 'taxes', 'music'])}"
        mode = rng.randrange(4)
        try:
            if mode == 0:
                c.check(q, c.r.retrieve(q, k=5))
            elif mode == 1:
                batch = [q, q + " please"]
                for query, hits in zip(batch, c.r.retrieve_batch(batch, k=5)):
                    c.check(query, hits)
            elif mode == 2:
                task = f"t{rng.randrange(N_TASKS)}"
                c.check(q, c.r.retrieve(q, k=5, filter={"task": task}), task)
            else:
                c.check(q, c.r.retrieve(q, k=5, mmr=True))
        except Exception as exc:
            c.error(f"reader mode {mode}", exc)


def _writer(c: _Checker, seed: int, stop: float, first_id: int) -> None:
    rng = random.Random(seed)
    next_id = first_id
    while time.perf_counter() < stop:
        try:
            new = make_pool(8, seed=next_id)
            for d in new:
                d.id = f"w{next_id}"
                d.metadata["task"] = f"t{rng.randrange(N_TASKS)}"
                next_id += 1
            c.r.add(new)
            ids = [d.id for d in c.r.demonstrations[:50]]
            c.r.delete(rng.sample(ids, 6))
            with c.lock:
                c.report.writes += 2
        except Exception as exc:
            c.error("writer", exc)


def _saver(c: _Checker, folder: Path, stop: float) -> None:
    from ..retriever import PIERetriever

    while time.perf_counter() < stop:
        try:
            c.r.save(folder)
            loaded = PIERetriever.load(folder, encoder=c.r.encoder)
            if len(loaded) != len(loaded.index):
                raise AssertionError(f"loaded {len(loaded)} demonstrations but {len(loaded.index)} vectors")
            with c.lock:
                c.report.saves += 1
        except Exception as exc:
            c.error("saver", exc)


def run_stress(retriever: Any, *, seconds: float = 5.0, readers: int = 4, writer: bool = True, saver: bool = True,
               seed: int = 0) -> StressReport:
    """Run readers (+ writer, + saver) on ``retriever`` for ``seconds``; return the counts."""
    report = StressReport(index=getattr(retriever.index, "kind", "?"))
    c = _Checker(retriever, report)
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
        shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = time.perf_counter() - t0
    return report
