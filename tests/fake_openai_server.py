"""A tiny OpenAI-compatible HTTP server on 127.0.0.1 for fast tests of the server-backed encoder and generator.

It speaks just enough of the API: ``GET /v1/models``, ``POST /v1/embeddings`` (deterministic hashing vectors),
``POST /v1/completions`` and ``/v1/chat/completions`` (echo answers), vLLM's ``POST /tokenize`` (one token per
whitespace-separated word, plus one for the start). Failure modes are switched per test: ``fail_status`` answers
that status ``fail_times`` times (``-1``: always), ``delay`` sleeps before answering (timeouts), ``model`` renames
the served model. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DIM = 16


def hash_vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=DIM).round(6).tolist()


class FakeServer:
    def __init__(self, model: str = "fake-model", max_model_len: int = 512, root: str | None = "/srv/fake-model") -> None:
        self.model, self.max_model_len, self.root = model, max_model_len, root
        self.fail_status: int | None = None
        self.fail_times = 0
        self.delay = 0.0
        self.requests: list[tuple[str, str, Any]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self, path: str) -> list[Any]:
        return [body for method, p, body in self.requests if method == "POST" and p == path]

    # -- answers ---------------------------------------------------------------------------------------
    def _failure(self) -> tuple[int, dict] | None:
        with self.lock:
            if self.fail_status is None or self.fail_times == 0:
                return None
            if self.fail_times > 0:
                self.fail_times -= 1
        return self.fail_status, {"error": {"message": f"injected failure {self.fail_status}", "type": "InternalServerError"}}

    def _model_error(self, body: dict) -> tuple[int, dict] | None:
        if body.get("model") != self.model:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError"}}
        return None

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, body))
        if self.delay:
            time.sleep(self.delay)
        failure = self._failure()
        if failure:
            return failure
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": self.model, "object": "model", "root": self.root,
                                                     "max_model_len": self.max_model_len}]}
        if method != "POST":
            return 404, {"error": {"message": f"no route {path}"}}
        error = self._model_error(body)
        if error:
            return error
        if path == "/v1/embeddings":
            rows = [{"index": i, "object": "embedding", "embedding": hash_vector(t)} for i, t in enumerate(body["input"])]
            return 200, {"object": "list", "data": rows[::-1], "model": self.model}  # out of order on purpose
        if path == "/v1/completions":
            n = int(body.get("n") or 1)
            choices = [{"index": i * n + j, "text": f" answer {i}.{j} to {len(p.split())} words", "finish_reason": "stop"}
                       for i, p in enumerate(body["prompt"]) for j in range(n)]
            return 200, {"choices": choices[::-1], "usage": {"prompt_tokens": 1}}
        if path == "/v1/chat/completions":
            last = body["messages"][-1]["content"]
            return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo: {last}"}, "finish_reason": "stop"}]}
        if path == "/tokenize":
            text = body.get("prompt") if "prompt" in body else " ".join(m["content"] for m in body["messages"])
            tokens = list(range(1 + len(text.split())))
            return 200, {"count": len(tokens), "tokens": tokens, "max_model_len": self.max_model_len}
        return 404, {"error": {"message": f"no route {path}"}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, data: Any) -> None:
                payload = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def do_GET(self) -> None:
                self._reply(*server.answer("GET", self.path, None))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._reply(*server.answer("POST", self.path, body))

        return Handler


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
