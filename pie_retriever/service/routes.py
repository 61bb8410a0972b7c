"""The routes of the service: ``/v1/indexes`` (list, search, fewshot, demonstrations), admin reload, health, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response

from pie_retriever.service import schemas as s
from pie_retriever.service.batching import SearchJob


def _key_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def _scope_guard(state: Any, needed: str) -> Any:
    def guard(request: Request) -> None:
        if not state.keys:
            return
        key = _key_of(request)
        scope = state.keys.scope_of(key)
        if scope is None:
            raise HTTPException(401, "missing or unknown API key; send `Authorization: Bearer KEY`",
                                headers={"WWW-Authenticate": "Bearer"})
        if needed == "write" and scope != "write":
            raise HTTPException(403, "this key has the read scope; adding, deleting and reloading need a write key")
    return Depends(guard)


def _records(hits: list[Any]) -> list[dict[str, Any]]:
    from pie_retriever.retrieval.cli import hit_record

    return [hit_record(h) for h in hits]


def _options(body: Any) -> dict[str, Any]:
    return {"k": body.k, "filter": body.filter, "content_weight": body.content_weight, "mmr": body.mmr,
            "mmr_lambda": body.mmr_lambda, **({"min_score": body.min_score} if getattr(body, "min_score", None) is not None else {})}


def _check_writable(state: Any) -> None:
    if state.config.read_only:
        raise HTTPException(403, "this server is a read replica (--read-only); send writes to the primary")


def add_routes(app: FastAPI, state: Any) -> None:
    read, write = _scope_guard(state, "read"), _scope_guard(state, "write")
    run = asyncio.get_running_loop  # bound at call time

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": s.ErrorOut}})
    def readyz(response: Response) -> dict[str, Any]:
        if not state.ready:
            response.status_code = 503
            return {"status": "loading"}
        return {"status": "ready", "indexes": sorted(state.registry.slots)}

    @app.get("/metrics", tags=["health"], dependencies=[read])
    def metrics() -> Response:
        body, ctype = state.metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/v1/indexes", response_model=s.IndexList, dependencies=[read])
    def list_indexes() -> dict[str, Any]:
        return {"indexes": [slot.info() for slot in state.registry.slots.values()]}

    @app.post("/v1/indexes/{name}/search", response_model=s.SearchResponse, response_model_exclude_none=True,
              dependencies=[read], responses={404: {"model": s.ErrorOut}, 503: {"model": s.ErrorOut}})
    async def search(name: str, body: s.SearchRequest) -> dict[str, Any]:
        state.registry.get(name)
        queries = [body.query] if body.query is not None else list(body.queries or [])
        content = [body.content_query] * len(queries) if body.content_query else None
        results = await state.batcher.search(SearchJob(name, queries, _options(body), content))
        if body.query is not None:
            return {"index": name, "hits": _records(results[0])}
        return {"index": name, "results": [_records(r) for r in results]}

    @app.post("/v1/indexes/{name}/fewshot", response_model=s.FewShotResponse, dependencies=[read],
              responses={404: {"model": s.ErrorOut}})
    async def fewshot(name: str, body: s.FewShotRequest) -> dict[str, Any]:
        retriever = state.registry.get(name).retriever
        return await run().run_in_executor(None, build_fewshot, state, name, retriever, body)

    @app.post("/v1/indexes/{name}/demonstrations", response_model=s.AddResponse, dependencies=[write],
              responses={404: {"model": s.ErrorOut}, 409: {"model": s.ErrorOut}})
    async def add(name: str, body: s.AddRequest) -> dict[str, Any]:
        _check_writable(state)
        state.registry.get(name)
        demos = [d.model_dump() for d in body.demonstrations]
        ids = await run().run_in_executor(None, state.registry.add, name, demos)
        return {"index": name, "ids": ids, "size": len(state.registry.get(name).retriever)}

    @app.delete("/v1/indexes/{name}/demonstrations", response_model=s.DeleteResponse, dependencies=[write],
                responses={404: {"model": s.ErrorOut}})
    async def delete(name: str, body: s.DeleteRequest) -> dict[str, Any]:
        _check_writable(state)
        state.registry.get(name)
        n = await run().run_in_executor(None, state.registry.delete, name, body.ids)
        return {"index": name, "deleted": n, "size": len(state.registry.get(name).retriever)}

    @app.post("/v1/admin/reload", response_model=s.ReloadResponse, dependencies=[write], responses={404: {"model": s.ErrorOut}})
    async def reload(body: s.ReloadRequest | None = None) -> dict[str, Any]:
        names = body.indexes if body is not None else None
        done = await run().run_in_executor(None, state.registry.reload, names)
        return {"reloaded": done}


def make_builder(state: Any, retriever: Any, body: Any) -> Any:
    """The :class:`FewShotPromptBuilder` a fewshot request describes (what a Python caller would build)."""
    from fastapi.exceptions import RequestValidationError

    from pie_retriever.prompting.builder import FewShotPromptBuilder

    if body.token_budget is not None and state.tokenizer is None:
        msg = "token_budget needs a tokenizer to count with; start the server with --tokenizer MODEL, or leave token_budget out."
        raise RequestValidationError([{"loc": ("body", "token_budget"), "msg": msg, "type": "value_error"}])
    options = {key: value for key, value in (("filter", body.filter), ("content_weight", body.content_weight)) if value is not None}
    if body.mmr:
        options.update(mmr=True, mmr_lambda=body.mmr_lambda)
    return FewShotPromptBuilder(retriever, k=body.k, template=body.template, order=body.order,
                                tokenizer=state.tokenizer if body.token_budget is not None else None,
                                max_model_len=body.token_budget, max_tokens=0, system_prompt=body.system_prompt,
                                retrieve_options=options)


def build_fewshot(state: Any, name: str, retriever: Any, body: Any) -> dict[str, Any]:
    builder = make_builder(state, retriever, body)
    built = builder.build_chat(body.query, body.input) if body.format == "chat" else builder.build(body.query, body.input)
    return {"index": name, "format": body.format, "prompt": built.prompt, "messages": built.messages,
            "ids": [h.demonstration.id for h in built.demonstrations], "dropped_ids": [h.demonstration.id for h in built.dropped],
            "num_tokens": built.num_tokens}
