"""Helpers of the service tests: a real ``pie-retriever serve`` on 127.0.0.1 and a random free port, over the bundled pool indexed with the ONNX
encoder ``pie-minilm-lc-onnx`` (the documented serving default). Every wait is bounded."""

from __future__ import annotations

import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

READ_KEY = "read-key-0123456789abcdef"
WRITE_KEY = "write-key-0123456789abcdef"
KEYS = f"read:{READ_KEY},write:{WRITE_KEY}"
MODEL = "pie-minilm-lc-onnx"
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pool_path() -> str:
    return str(importlib.resources.files("pie_retriever.pool") / "data" / "demo_pool.jsonl")


def build_pool_index(folder: Path) -> Path:
    """The bundled pool (249 demonstrations) indexed with the ONNX encoder and saved to ``folder``."""
    from pie_retriever import PIERetriever
    from pie_retriever.encoders import make_encoder
    from pie_retriever.pool.pools import load_pool

    PIERetriever.from_demonstrations(load_pool(pool_path()), make_encoder(MODEL)).save(folder)
    return folder


def module_server(built: Path, folder: Path):
    """A fixture body: a server over a private copy of ``built`` at ``folder``, stopped after the module."""
    import shutil

    shutil.copytree(built, folder)
    srv = Server([folder]).start()
    yield srv
    srv.stop()


class Server:
    """A server subprocess: ``start()`` waits for /readyz (bounded), ``kill()`` is kill -9, ``stop()`` SIGTERM."""

    def __init__(self, index_dirs: list[Path], *args: str, env: dict[str, str] | None = None) -> None:
        self.index_dirs, self.args = index_dirs, list(args)
        self.env = {**os.environ, "PIE_SERVE_KEYS": KEYS, **(env or {})}
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        cmd = [sys.executable, "-m", "pie_retriever.cli", "serve", *map(str, self.index_dirs), "--port", str(self.port), *self.args]
        self.log_file = tempfile.NamedTemporaryFile(prefix="pie-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.output()
                self._drop_log()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{out[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready within {START_TIMEOUT} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self.proc is not None:
            self._drop_log()

    def stop(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def output(self) -> str:
        """Everything the server printed so far (a file, so a chatty server never blocks on a full pipe)."""
        path = Path(self.log_file.name) if self.proc is not None else None
        if path is not None and path.exists():
            self.log = path.read_text(errors="replace")
        return self.log

    def _drop_log(self) -> None:
        self.output()
        self.log_file.close()
        Path(self.log_file.name).unlink(missing_ok=True)

    def client(self, key: str | None = READ_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)


