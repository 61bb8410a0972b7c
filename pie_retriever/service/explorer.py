"""The pool explorer page of ``pie-retriever serve`` (``GET /explorer``) and the endpoints it needs beyond the API:
BM25 top-k (``POST /v1/indexes/{name}/bm25``), a 2-D map of the pool (``GET /v1/indexes/{name}/map``) and a relabel
(``POST /v1/indexes/{name}/relabel``, through the registry's durable delete + add). The page is plain HTML/JS/CSS in
``static/``; plotly.js is served from the ``plotly`` Python package, so nothing is fetched from the internet.

BM25 and the map are built lazily per pool state and cached in memory: the state is ``(retriever, next_label, size)``,
which every add (a new label) and delete (a smaller size) changes, so a write or a reload rebuilds them at next use.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

from pie_retriever.service import schemas as s
from pie_retriever.service.routes import _check_writable, _records, _scope_guard

logger = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
PAGE_FILES = {"explorer.js": "text/javascript", "explorer.css": "text/css"}
MAX_COLOURS = 20  # at most this many labels get their own colour; the rest are "other"
OTHER = "other"


class RelabelRequest(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=200, description="the new metadata.task")


class RelabelResponse(BaseModel):
    index: str
    id: str
    task: str
    previous: str | None
    size: int


class MapResponse(BaseModel):
    index: str
    method: str
    ids: list[str]
    x: list[float]
    y: list[float]
    labels: list[str] = Field(description="each point's colour group: its task, or 'other' past the largest groups")
    tasks: list[str] = Field(description="each point's own metadata.task ('' when it has none)")
    instructions: list[str]
    groups: list[str] = Field(description="the colour groups, largest first ('other' last)")


def _state_key(retriever: Any) -> tuple[int, int, int]:
    with retriever.snapshot() as (demos, next_label):
        return id(retriever), next_label, len(demos)


def _task_of(demo: Any) -> str:
    meta = demo.metadata if isinstance(demo.metadata, dict) else {}
    return str(meta.get("task", ""))


def _matches(demo: Any, flt: dict[str, Any] | None) -> bool:
    if not flt:
        return True
    meta = demo.metadata if isinstance(demo.metadata, dict) else {}
    for key, want in flt.items():
        allowed = want if isinstance(want, list) else [want]
        if key not in meta or meta[key] not in allowed:
            return False
    return True


class ExplorerCache:
    """Per-index BM25 retriever and 2-D map, each tagged with the pool state it was built from."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bm25: dict[str, tuple[Any, Any]] = {}
        self._map: dict[str, tuple[Any, dict[str, Any]]] = {}

    def _cached(self, store: dict[str, tuple[Any, Any]], name: str, retriever: Any, build: Any) -> Any:
        """``store[name]`` when it was built from the retriever's current pool state, else ``build()`` (outside the
        lock: a build may take a while, and two racing builds of the same state give the same result)."""
        key = _state_key(retriever)
        with self._lock:
            cached = store.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
        built = build()
        with self._lock:
            store[name] = (key, built)
        return built

    def bm25(self, name: str, retriever: Any) -> Any:
        from pie_retriever.retrieval.bm25 import BM25Retriever

        def build() -> Any:
            with retriever.snapshot() as (demos, _):
                pool = [demos[label] for label in sorted(demos)]
            return BM25Retriever(pool, embed_fields=getattr(retriever, "embed_fields", ("instruction",)))

        return self._cached(self._bm25, name, retriever, build)

    def warm(self, name: str, retriever: Any) -> None:
        """Build BM25 ahead of the first query; a failure (an empty pool) is left for that query to report."""
        try:
            self.bm25(name, retriever)
        except Exception as exc:  # a warm-up never fails a request
            logger.debug("explorer: BM25 warm-up of %s skipped (%s)", name, exc)

    def map(self, name: str, retriever: Any) -> dict[str, Any]:
        def build() -> dict[str, Any]:
            with retriever.snapshot() as (demos, _):
                labels = sorted(demos)
                pool = [demos[label] for label in labels]
                vectors = (np.asarray(retriever.index.reconstruct(np.asarray(labels, dtype=np.int64)), dtype=np.float32)
                           if labels else np.zeros((0, 2)))
            return project(pool, vectors)

        return self._cached(self._map, name, retriever, build)


def project(pool: list[Any], vectors: np.ndarray) -> dict[str, Any]:
    """PCA to 2-D (numpy SVD of the centred vectors) and colour groups: the ``MAX_COLOURS - 1`` largest tasks, then 'other'."""
    if len(pool) >= 2:
        centred = vectors - vectors.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
        if xy.shape[1] < 2:
            xy = np.hstack([xy, np.zeros((len(pool), 2 - xy.shape[1]))])
    else:
        xy = np.zeros((len(pool), 2))
    tasks = [_task_of(d) for d in pool]
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t or "(no task)"] = counts.get(t or "(no task)", 0) + 1
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    keep = set(ranked if len(ranked) <= MAX_COLOURS else ranked[: MAX_COLOURS - 1])
    groups = [t if (t or "(no task)") in keep else OTHER for t in (t or "(no task)" for t in tasks)]
    order = [t for t in ranked if t in keep] + ([OTHER] if len(keep) < len(ranked) else [])
    return {"method": "pca", "ids": [str(d.id) for d in pool], "x": [round(float(v), 5) for v in xy[:, 0]],
            "y": [round(float(v), 5) for v in xy[:, 1]], "labels": groups, "tasks": tasks,
            "instructions": [d.instruction for d in pool], "groups": order}


def bm25_search(bm25: Any, queries: list[str], k: int, flt: dict[str, Any] | None) -> list[list[dict[str, Any]]]:
    """Top-k by BM25 score per query among the demonstrations the filter admits (all when no filter)."""
    from pie_retriever.types import Hit

    scores = bm25.scores(queries)
    allowed = np.array([_matches(d, flt) for d in bm25.demonstrations], dtype=bool)
    if flt and not allowed.any():
        raise HTTPException(404, f"no demonstration matches the filter {flt}")
    out = []
    for row in scores:
        masked = np.where(allowed, row, -np.inf)
        top = np.argsort(-masked, kind="stable")[: min(k, int(allowed.sum()))]
        out.append(_records([Hit(bm25.demonstrations[int(i)], float(masked[i]), r) for r, i in enumerate(top)]))
    return out


def relabel(state: Any, name: str, demo_id: str, task: str) -> dict[str, Any]:
    """Delete + add of the same id with ``metadata.task`` replaced, each logged durably by the registry."""
    retriever = state.registry.get(name).retriever
    if demo_id not in retriever:
        raise HTTPException(404, f"no demonstration with id {demo_id!r} in index {name!r}")
    demo = retriever.get(demo_id)
    meta = dict(demo.metadata) if isinstance(demo.metadata, dict) else {}
    previous = meta.get("task")
    meta["task"] = task
    record = {"id": demo.id, "instruction": demo.instruction, "input": demo.input, "output": demo.output, "metadata": meta}
    state.registry.delete(name, [demo_id])
    try:
        state.registry.add(name, [record])
    except Exception:  # put the original back (also durably) so a failed add never loses the demonstration
        state.registry.add(name, [{**record, "metadata": dict(demo.metadata or {})}])
        raise
    return {"index": name, "id": demo_id, "task": task, "previous": None if previous is None else str(previous),
            "size": len(state.registry.get(name).retriever)}


def _plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise HTTPException(404, "plotly is not installed; `pip install plotly` (the `serve` extra) to draw the task map")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


def add_explorer_routes(app: FastAPI, state: Any) -> None:
    read, write = _scope_guard(state, "read"), _scope_guard(state, "write")
    cache = ExplorerCache()
    run = asyncio.get_running_loop

    @app.get("/explorer", response_class=HTMLResponse, include_in_schema=False)
    async def explorer_page() -> Any:
        for name, slot in list(state.registry.slots.items()):  # warm BM25 (bm25s import + index) while the page loads
            run().run_in_executor(None, cache.warm, name, slot.retriever)
        return FileResponse(STATIC / "explorer.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/explorer/static/{file}", include_in_schema=False)
    def explorer_static(file: str) -> Any:
        if file == "plotly.min.js":
            return FileResponse(_plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
        if file not in PAGE_FILES:  # a fixed set of names: no request value reaches the file system
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / file, media_type=PAGE_FILES[file], headers={"Cache-Control": "no-cache"})

    @app.post("/v1/indexes/{name}/bm25", response_model=s.SearchResponse, response_model_exclude_none=True,
              dependencies=[read], responses={404: {"model": s.ErrorOut}}, tags=["explorer"])
    async def bm25(name: str, body: s.SearchRequest) -> dict[str, Any]:
        """BM25 top-k over the same pool (``k`` and ``filter`` apply; the PIE-only options are ignored)."""
        retriever = state.registry.get(name).retriever
        queries = [body.query] if body.query is not None else list(body.queries or [])

        def work() -> list[list[dict[str, Any]]]:
            return bm25_search(cache.bm25(name, retriever), queries, body.k, body.filter)

        results = await run().run_in_executor(None, work)
        if body.query is not None:
            return {"index": name, "hits": results[0]}
        return {"index": name, "results": results}

    @app.get("/v1/indexes/{name}/map", response_model=MapResponse, dependencies=[read],
             responses={404: {"model": s.ErrorOut}}, tags=["explorer"])
    async def pool_map(name: str) -> dict[str, Any]:
        retriever = state.registry.get(name).retriever
        built = await run().run_in_executor(None, cache.map, name, retriever)
        return {"index": name, **built}

    @app.post("/v1/indexes/{name}/relabel", response_model=RelabelResponse, dependencies=[write],
              responses={404: {"model": s.ErrorOut}}, tags=["explorer"])
    async def relabel_route(name: str, body: RelabelRequest) -> dict[str, Any]:
        _check_writable(state)
        state.registry.get(name)
        return await run().run_in_executor(None, relabel, state, name, body.id, body.task)
