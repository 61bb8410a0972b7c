"""Micro-batching: searches that arrive within a short window (≤ 2 ms, ≤ 64 queries by default) go to the encoder
as one ``retrieve_batch`` in a worker thread, off the event loop. The queue is bounded: when it is full a search
is shed at once (``QueueFullError`` → 503 with ``Retry-After``) instead of waiting behind an unbounded backlog."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from pie_retriever.errors import PIEError


class QueueFullError(PIEError):
    """The search queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"The search queue is full; retry after {retry_after} s.")
        self.retry_after = retry_after


@dataclass
class SearchJob:
    """One request's queries and options; ``key`` groups jobs that can share a ``retrieve_batch`` call."""

    index: str
    queries: list[str]
    options: dict[str, Any]
    content_queries: list[str] | None = None
    future: asyncio.Future = field(default=None)  # type: ignore[assignment]

    @property
    def key(self) -> str:
        return json.dumps([self.index, self.options], sort_keys=True, default=str)


class MicroBatcher:
    """Collects :class:`SearchJob` s and runs them grouped; ``get_retriever(name)`` is read at run time (so a reload
    applies to the next batch, and a batch in flight finishes on the retriever it started with)."""

    def __init__(self, get_retriever: Callable[[str], Any], *, window: float, max_queries: int, queue_size: int,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.get_retriever = get_retriever
        self.window = window
        self.max_queries = max_queries
        self.queue_size = queue_size
        self.on_batch = on_batch
        self.pending = 0  # queries waiting or running
        self._queue: asyncio.Queue[SearchJob] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pie-search")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def search(self, job: SearchJob) -> list[list[Any]]:
        if self.pending and self.pending + len(job.queries) > self.queue_size:  # an idle queue takes any request
            raise QueueFullError(1)
        self.pending += len(job.queries)
        job.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(job)  # type: ignore[union-attr]
        try:
            return await job.future
        finally:
            self.pending -= len(job.queries)

    async def _collect(self) -> list[SearchJob]:
        assert self._queue is not None
        jobs = [await self._queue.get()]
        n = len(jobs[0].queries)
        # a lone request (nothing else queued or running) goes at once: the window only pays when others are around
        deadline = time.monotonic() + (self.window if self.pending > n else 0.0)
        while n < self.max_queries:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            jobs.append(job)
            n += len(job.queries)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            groups: dict[str, list[SearchJob]] = {}
            for job in jobs:
                if not job.future.done():  # the client went away
                    groups.setdefault(job.key, []).append(job)
            for group in groups.values():
                results = await loop.run_in_executor(self._pool, self._run_group, group)
                for job, result in zip(group, results):
                    if job.future.done():
                        continue
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)

    def _run_group(self, group: list[SearchJob]) -> list[Any]:
        """One ``retrieve_batch`` for the group; if it fails, each job alone (so an error reaches its own request)."""
        try:
            retriever = self.get_retriever(group[0].index)
            out = self._retrieve(retriever, group)
            if self.on_batch:
                self.on_batch(sum(len(j.queries) for j in group))
            return out
        except Exception as exc:
            if len(group) == 1:
                return [exc]
            return [self._run_group([job])[0] for job in group]

    @staticmethod
    def _retrieve(retriever: Any, group: list[SearchJob]) -> list[list[list[Any]]]:
        queries = [q for job in group for q in job.queries]
        options = dict(group[0].options)
        if any(job.content_queries for job in group):
            options["content_queries"] = [c for job in group for c in (job.content_queries or job.queries)]
        hits = retriever.retrieve_batch(queries, **options)
        out, start = [], 0
        for job in group:
            out.append(hits[start:start + len(job.queries)])
            start += len(job.queries)
        return out
