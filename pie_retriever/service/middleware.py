"""ASGI middleware of the service: the body-size limit (413 before the body is parsed) and request metrics."""

from __future__ import annotations

import json
import time
from typing import Any


class _TooLarge(Exception):
    pass


class BodyLimitAndMetrics:
    """Refuse bodies over ``max_body`` bytes (declared or streamed) with 413 before the app sees them (the body is read
    here, bounded, and handed on); count and time every request."""

    def __init__(self, app: Any, max_body: int, metrics: Any) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                raise _TooLarge
            body = await self._read_body(receive)
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: wait for the disconnect

            await self.app(scope, replay, send_wrapper)
        except _TooLarge:
            if not status["sent"]:
                await self._too_large(send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(path, scope.get("method", ""), status["code"], time.perf_counter() - start)

    async def _read_body(self, receive: Any) -> bytes:
        """The whole body, or ``_TooLarge`` as soon as it passes the limit (a chunked body has no Content-Length)."""
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps({"detail": [{"loc": ["body"], "type": "too_large",
                                       "msg": f"request body larger than the limit of {self.max_body} bytes; send fewer "
                                              "demonstrations or queries per request (or start the server with a larger --max-body)"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
