"""A small JSON client for an OpenAI-compatible server (vLLM's, or any other): retries, backoff, clear errors.

:class:`ServerClient` talks to ``base_url`` with httpx (the ``serve`` extra), or through an ``openai.OpenAI``
client you already have (which keeps its own retry and timeout settings). It is shared by
:class:`~pie_retriever.encoders.server.ServerEncoder` (``/v1/embeddings``) and the server-backed generator of
:mod:`pie_retriever.integrations.openai_server` (``/v1/completions``, ``/v1/chat/completions``).

Errors are :class:`~pie_retriever.errors.ServerError` (a ``ConnectionError``) naming the URL, what happened
(connection refused, timeout, HTTP status with the server's message) and how to fix it; a model the server does
not serve is an :class:`~pie_retriever.errors.UnknownModelError` listing the served ones. Connection errors,
timeouts and HTTP 429/5xx are retried ``max_retries`` times, waiting ``backoff * 2**attempt`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

from pie_retriever._util import check_int
from pie_retriever.errors import ConfigError, ServerError, UnknownModelError, require

__all__ = ["DEFAULT_MAX_REPLY_BYTES", "RETRY_STATUSES", "ServerClient", "normalize_base_url"]

logger = logging.getLogger(__name__)

#: HTTP statuses worth retrying (overload or a transient server failure).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_START_HINT = ("Is the server running? For vLLM on CPU: python -m vllm.entrypoints.openai.api_server --model DIR "
               "--host 127.0.0.1 --port PORT (add --runner pooling for embeddings).")


MAX_TIMEOUT = 600.0
MAX_BACKOFF = 60.0
MAX_RETRIES = 20
#: Largest reply read (decoded bytes, so a gzip bomb stops here too): 256 MiB, about 4,000 embeddings of 4,096 floats.
DEFAULT_MAX_REPLY_BYTES = 256 * 1024 * 1024


def _seconds(value: Any, name: str, low: float, high: float, *, exclusive_low: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value == value
    ok = ok and (value > low if exclusive_low else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if exclusive_low else '>='} {low:g} and <= {high:g}"
        msg = f"{name} must be a number of seconds {bound}, got {value!r}."
        raise ConfigError(msg)
    return float(value)


def normalize_base_url(base_url: Any) -> str:
    """``http://host:port`` or ``http://host:port/v1`` -> ``http://host:port/v1`` (no trailing slash)."""
    if not isinstance(base_url, str) or not base_url.strip():
        msg = f"base_url must be the server's URL such as 'http://127.0.0.1:8000/v1', got {base_url!r}."
        raise ConfigError(msg)
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = f"base_url must start with http:// or https:// and name a host, got {base_url!r} (e.g. 'http://127.0.0.1:8000/v1')."
        raise ConfigError(msg)
    return url if parts.path else url + "/v1"


def _server_message(body: str) -> str:
    """The error message of an OpenAI-style error body (``{"error": {"message": ...}}``), else the text."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return (body or "").strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
        if data.get("detail"):
            return str(data["detail"])[:300]
    return str(data)[:300]


class _Failure(Exception):
    """One failed attempt: ``kind`` is 'connect', 'timeout' or 'status'."""

    def __init__(self, kind: str, detail: str, status: int | None = None, body: str = "") -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status, self.body = kind, detail, status, body

    @property
    def retryable(self) -> bool:
        return self.kind in ("connect", "timeout") or self.status in RETRY_STATUSES


class ServerClient:
    """JSON requests to an OpenAI-compatible server with retries.

    Args:
        base_url: ``http://host:port/v1`` (``/v1`` is added when the URL has no path). Not needed with ``client``.
        client: an ``openai.OpenAI`` client to send the requests through (then ``base_url``, ``api_key``, the
            timeout and the retries are the client's own: ``timeout``/``max_retries``/``backoff`` here do not apply).
        api_key: sent as ``Authorization: Bearer``; default: ``$PIE_RETRIEVER_API_KEY``, then ``$OPENAI_API_KEY``.
        timeout: seconds for a whole attempt, reply body included (at most 600): a server that drips its reply
            cannot hold a call longer.
        max_retries: further attempts after a connection error, a timeout or HTTP 429/5xx (at most 20).
        backoff: seconds before the first retry, doubled after each (at most 60).
        max_reply_bytes: the largest reply read, counted after decompression (default 256 MiB).
    """

    def __init__(self, base_url: str | None = None, *, client: Any = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> None:
        self.timeout = _seconds(timeout, "timeout", 0.0, MAX_TIMEOUT, exclusive_low=True)
        self.backoff = _seconds(backoff, "backoff", 0.0, MAX_BACKOFF)
        self.max_retries = check_int(max_retries, "max_retries", minimum=0)
        if self.max_retries > MAX_RETRIES:
            msg = f"max_retries must be at most {MAX_RETRIES}, got {max_retries}."
            raise ConfigError(msg)
        self.max_reply_bytes = check_int(max_reply_bytes, "max_reply_bytes", minimum=1)
        self._openai = client
        if client is not None:
            if not (hasattr(client, "post") and hasattr(client, "base_url")):
                msg = f"client must be an openai.OpenAI client (with post() and base_url), got {type(client).__name__}."
                raise TypeError(msg)
            self.base_url = normalize_base_url(str(client.base_url))
            self._http = None
        else:
            self.base_url = normalize_base_url(base_url)
            httpx = require("httpx", "serve", "A server-backed encoder or generator")
            key = api_key or os.environ.get("PIE_RETRIEVER_API_KEY") or os.environ.get("OPENAI_API_KEY")
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            self._http = httpx.Client(headers=headers, timeout=self.timeout)

    @property
    def root_url(self) -> str:
        """The server's root, for endpoints outside ``/v1`` such as vLLM's ``/health`` and ``/tokenize``."""
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    # -- one attempt -----------------------------------------------------------------------------------
    def _attempt_httpx(self, method: str, url: str, body: Any) -> Any:
        """One request, read as a stream: the whole attempt (connect, headers, body) must end within ``timeout``
        seconds, and at most ``max_reply_bytes`` decoded bytes are read (a larger reply is refused, not retried)."""
        import httpx

        deadline = time.monotonic() + self.timeout
        try:
            with self._http.stream(method, url, json=body) as response:
                raw = self._read_capped(response, deadline, url)
        except httpx.TimeoutException as exc:
            raise _Failure("timeout", f"no answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise _Failure("connect", f"{type(exc).__name__}: {exc}") from exc
        text = raw.decode("utf-8", errors="replace")
        if response.status_code >= 400:
            raise _Failure("status", f"HTTP {response.status_code}", response.status_code, text)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise _Failure("status", f"HTTP {response.status_code} with a body that is not JSON: {text[:120]!r}",
                           response.status_code, text) from exc

    def _read_capped(self, response: Any, deadline: float, url: str) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_reply_bytes:
            raise self._too_large(url, f"declares {int(declared):,} bytes")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_reply_bytes:
                raise self._too_large(url, f"is over {size:,} bytes once decoded")
            if time.monotonic() > deadline:
                raise _Failure("timeout", f"the reply did not finish within {self.timeout:g} s")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, url: str, what: str) -> ServerError:
        msg = (f"The reply of {url} {what}, more than max_reply_bytes={self.max_reply_bytes:,}; refusing to read it. "
               "Send fewer texts per request (batch_size), or raise max_reply_bytes if the server is yours.")
        return ServerError(msg, url=url)

    def _attempt_openai(self, method: str, url: str, body: Any) -> Any:
        import openai

        options: dict[str, Any] = {}  # the openai client's own timeout and retries apply (see request())
        try:
            if method == "GET":
                return self._openai.get(url, cast_to=object, options=options)
            return self._openai.post(url, cast_to=object, body=body, options=options)
        except openai.APITimeoutError as exc:
            raise _Failure("timeout", f"no answer within {self.timeout:g} s") from exc
        except openai.APIConnectionError as exc:
            raise _Failure("connect", f"{type(exc).__name__}: {exc}") from exc
        except openai.APIStatusError as exc:
            text = exc.response.text if getattr(exc, "response", None) is not None else str(exc)
            raise _Failure("status", f"HTTP {exc.status_code}", exc.status_code, text) from exc

    # -- requests --------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method`` ``path`` (relative to ``base_url``, or absolute) with retries; the parsed JSON answer."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + "/" + path.lstrip("/")
        attempt_fn = self._attempt_openai if self._openai is not None else self._attempt_httpx
        retries = 0 if self._openai is not None else self.max_retries  # an openai client retries by itself
        started = time.perf_counter()
        for attempt in range(retries + 1):
            try:
                return attempt_fn(method, url, body)
            except _Failure as failure:
                if not failure.retryable or attempt == retries:
                    raise self._error(method, url, failure, attempt + 1, time.perf_counter() - started) from None
                wait = self.backoff * (2 ** attempt)
                logger.warning("%s %s: %s; retry %d/%d in %.1f s", method, url, failure.detail, attempt + 1, self.max_retries, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def _error(self, method: str, url: str, failure: _Failure, attempts: int, seconds: float) -> Exception:
        tried = f"{attempts} attempt{'s' if attempts > 1 else ''} over {seconds:.1f} s"
        if failure.kind == "connect":
            msg = f"Cannot reach the server at {self.base_url} ({method} {url}: {failure.detail}; {tried}). {_START_HINT}"
        elif failure.kind == "timeout":
            msg = (f"The server at {self.base_url} did not answer {method} {url} within {self.timeout:g} s ({tried}). "
                   "Raise timeout= (ServerEncoder; server_options for PIEGenerator), send fewer texts or prompts per "
                   "request (ServerEncoder's batch_size, fewer queries per generate call), or check that the server is not stuck.")
        else:
            server = _server_message(failure.body)
            hint = ("the server failed; see its log" if failure.status and failure.status >= 500
                    else "the server refused the request")
            msg = f"The server at {self.base_url} answered {failure.detail} to {method} {url} ({tried}): {server!r} ({hint})."
            if failure.status == 404 and "model" in server.lower():
                return UnknownModelError(msg + f" Served models: {', '.join(self.model_ids()) or '(none)'}.")
        return ServerError(msg, status_code=failure.status, url=url)

    # -- models ----------------------------------------------------------------------------------------
    def models(self) -> list[dict[str, Any]]:
        """``GET /models``: the served models (``id``, and with vLLM ``root`` and ``max_model_len``)."""
        data = self.get("models")
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            msg = f"GET {self.base_url}/models returned {str(data)[:120]!r}, not an OpenAI model list; is base_url an OpenAI-compatible API?"
            raise ServerError(msg, url=self.base_url + "/models")
        return [r for r in rows if isinstance(r, dict)]

    def model_ids(self) -> list[str]:
        try:
            return [str(r.get("id")) for r in self.models()]
        except ServerError:
            return []

    def model_info(self, model: str) -> dict[str, Any]:
        """The ``/models`` entry of ``model``; UnknownModelError listing the served ids when it is not served."""
        rows = self.models()
        for row in rows:
            if row.get("id") == model:
                return row
        served = ", ".join(repr(r.get("id")) for r in rows) or "(none)"
        msg = (f"The server at {self.base_url} does not serve model {model!r}; it serves: {served}. Pass one of these "
               "as model= (vLLM names a model by its --model argument unless --served-model-name is given).")
        raise UnknownModelError(msg)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __repr__(self) -> str:
        via = "openai client" if self._openai is not None else "httpx"
        return f"ServerClient({self.base_url!r}, via={via}, timeout={self.timeout:g}, max_retries={self.max_retries})"
