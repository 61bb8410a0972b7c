"""The FastAPI app of ``pie-retriever serve``: routes over :class:`~pie_retriever.service.indexes.Registry`, the
micro-batcher, keys, limits and metrics. Build it with :func:`create_app`; :mod:`pie_retriever.service.cli` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pie_retriever.errors import PIEError, require
from pie_retriever.service.batching import MicroBatcher, QueueFullError
from pie_retriever.service.config import ServiceConfig
from pie_retriever.service.errors_map import message_of, status_of
from pie_retriever.service.indexes import Registry
from pie_retriever.service.keys import KeyRing
from pie_retriever.service.metrics import Metrics
from pie_retriever.service.middleware import BodyLimitAndMetrics

logger = logging.getLogger(__name__)


class ServiceState:
    """Everything the routes share: config, keys, the registry, the batcher, metrics, readiness, the tokenizer."""

    def __init__(self, config: ServiceConfig, keys: KeyRing) -> None:
        self.config = config
        self.keys = keys
        self.registry = Registry(dict(config.indexes), read_only=config.read_only)
        self.batcher = MicroBatcher(lambda name: self.registry.get(name).retriever, window=config.batch_window,
                                    max_queries=config.batch_max, queue_size=config.queue_size,
                                    on_batch=lambda n: self.metrics.batch.observe(n))
        self.metrics = Metrics(lambda: self.batcher.pending, lambda: {n: len(s.retriever) for n, s in self.registry.slots.items()})
        self.ready = False
        self.tokenizer: Any = None

    def startup(self) -> None:
        """Load every index (replaying its log), the tokenizer, and warm each encoder with one query."""
        self.registry.load_all()
        if self.config.tokenizer:
            from pie_retriever.prompting.builder import _load_tokenizer

            self.tokenizer = _load_tokenizer(self.config.tokenizer)
        for slot in self.registry.slots.values():
            if len(slot.retriever):
                slot.retriever.retrieve("warm up the encoder", k=1)
        self.ready = True


def _exception_handlers(fastapi: Any, state: ServiceState) -> dict:
    from fastapi.responses import JSONResponse

    async def on_library_error(request: Any, exc: Exception) -> Any:
        code = status_of(exc)
        if code is None:
            logger.exception("Unexpected error on %s", request.url.path)
            return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)
        if code == 422:  # the shape of FastAPI's own 422 (a list of {loc, msg, type}), so clients parse one form
            return JSONResponse({"detail": [{"loc": ["body"], "msg": message_of(exc), "type": "value_error"}]}, status_code=422)
        return JSONResponse({"detail": message_of(exc)}, status_code=code)

    async def on_queue_full(request: Any, exc: QueueFullError) -> Any:
        state.metrics.shed.inc()
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    # Library errors are handled inside the app (a 4xx/507 reply, connection kept); anything else is a logged 500.
    return {QueueFullError: on_queue_full, PIEError: on_library_error, ValueError: on_library_error,
            TypeError: on_library_error, Exception: on_library_error}


def _reload_on_sighup(state: ServiceState) -> None:
    """SIGHUP reloads every index from disk, like ``POST /v1/admin/reload`` (main thread only; else nothing)."""
    import signal

    loop = asyncio.get_running_loop()

    def reload() -> None:
        future = loop.run_in_executor(None, state.registry.reload, None)
        future.add_done_callback(lambda f: f.exception() and logger.error("SIGHUP reload failed: %s", f.exception()))

    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, reload)


def create_app(config: ServiceConfig, keys: KeyRing | None = None) -> Any:
    """The ASGI app (FastAPI) for ``config``; indexes load in its lifespan (``/readyz`` turns 200 when done)."""
    fastapi = require("fastapi", "serve", "pie-retriever serve")
    from pie_retriever.service.routes import add_routes

    state = ServiceState(config, keys if keys is not None else KeyRing([]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        await asyncio.get_running_loop().run_in_executor(None, state.startup)
        state.batcher.start()
        _reload_on_sighup(state)
        yield
        await state.batcher.stop()

    app = fastapi.FastAPI(title="pie-retriever selection service", version="1", lifespan=lifespan,
                          exception_handlers=_exception_handlers(fastapi, state),
                          description="Task-matched few-shot demonstrations and prompts over HTTP. See docs/service.md.")
    app.state.pie = state
    add_routes(app, state)
    from pie_retriever.service.explorer import add_explorer_routes

    add_explorer_routes(app, state)  # GET /explorer and the endpoints its views use (docs/explorer.md)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    app.add_middleware(BodyLimitAndMetrics, max_body=config.max_body, metrics=state.metrics)
    return app
