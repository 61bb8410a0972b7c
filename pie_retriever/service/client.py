"""``SelectionClient`` / ``AsyncSelectionClient``: the service's endpoints from Python over httpx, retrying a 503
(queue full, or an index still loading) after its ``Retry-After``. Also importable as ``pie_retriever.client``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Sequence

from pie_retriever.errors import ServerError, require

__all__ = ["AsyncSelectionClient", "SelectionClient", "SelectionError"]


class SelectionError(ServerError):
    """The service answered with an error; ``status`` is the HTTP status and ``detail`` its message."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"selection service replied {status}: {detail}")
        self.status = status
        self.detail = detail


def _retry_after(response: Any, attempt: int) -> float:
    try:
        return min(float(response.headers.get("retry-after", "")), 30.0)
    except ValueError:
        return min(0.1 * 2 ** attempt, 5.0)


def _result(response: Any) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise SelectionError(response.status_code, detail)
    return response.json()


class _Base:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 30.0, retries: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = int(retries)

    def __repr__(self) -> str:  # the key is never shown
        return f"{type(self).__name__}({self.base_url!r})"

    @staticmethod
    def _search_body(query: str | None, queries: Sequence[str] | None, k: int, options: dict[str, Any]) -> dict[str, Any]:
        body = {"k": k, **{key: v for key, v in options.items() if v is not None}}
        if queries is not None:
            body["queries"] = list(queries)
        else:
            body["query"] = query
        return body


class SelectionClient(_Base):
    """Synchronous client. ``search(index, query, k=4, filter=..., ...)`` → hits (dicts with a 1-based ``rank``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        httpx = require("httpx", "serve", "SelectionClient")
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=self.timeout)

    def request(self, method: str, path: str, json: Any = None) -> Any:
        for attempt in range(self.retries + 1):
            response = self._http.request(method, path, json=json)
            if response.status_code != 503 or attempt == self.retries:
                return _result(response)
            time.sleep(_retry_after(response, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def indexes(self) -> list[dict[str, Any]]:
        return self.request("GET", "/v1/indexes")["indexes"]

    def search(self, index: str, query: str, k: int = 4, **options: Any) -> list[dict[str, Any]]:
        return self.request("POST", f"/v1/indexes/{index}/search", self._search_body(query, None, k, options))["hits"]

    def search_batch(self, index: str, queries: Sequence[str], k: int = 4, **options: Any) -> list[list[dict[str, Any]]]:
        return self.request("POST", f"/v1/indexes/{index}/search", self._search_body(None, queries, k, options))["results"]

    def fewshot(self, index: str, query: str, input: str = "", **options: Any) -> dict[str, Any]:
        return self.request("POST", f"/v1/indexes/{index}/fewshot", {"query": query, "input": input, **options})

    def add(self, index: str, demonstrations: Sequence[dict[str, Any]]) -> list[str]:
        return self.request("POST", f"/v1/indexes/{index}/demonstrations", {"demonstrations": list(demonstrations)})["ids"]

    def delete(self, index: str, ids: Sequence[str]) -> int:
        return self.request("DELETE", f"/v1/indexes/{index}/demonstrations", {"ids": list(ids)})["deleted"]

    def reload(self, indexes: Sequence[str] | None = None) -> dict[str, int]:
        return self.request("POST", "/v1/admin/reload", {"indexes": list(indexes) if indexes else None})["reloaded"]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SelectionClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncSelectionClient(_Base):
    """The same calls, ``await``-able (one ``httpx.AsyncClient``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        httpx = require("httpx", "serve", "AsyncSelectionClient")
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=self.timeout)

    async def request(self, method: str, path: str, json: Any = None) -> Any:
        for attempt in range(self.retries + 1):
            response = await self._http.request(method, path, json=json)
            if response.status_code != 503 or attempt == self.retries:
                return _result(response)
            await asyncio.sleep(_retry_after(response, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def search(self, index: str, query: str, k: int = 4, **options: Any) -> list[dict[str, Any]]:
        return (await self.request("POST", f"/v1/indexes/{index}/search", self._search_body(query, None, k, options)))["hits"]

    async def search_batch(self, index: str, queries: Sequence[str], k: int = 4, **options: Any) -> list[list[dict[str, Any]]]:
        return (await self.request("POST", f"/v1/indexes/{index}/search", self._search_body(None, queries, k, options)))["results"]

    async def fewshot(self, index: str, query: str, input: str = "", **options: Any) -> dict[str, Any]:
        return await self.request("POST", f"/v1/indexes/{index}/fewshot", {"query": query, "input": input, **options})

    async def add(self, index: str, demonstrations: Sequence[dict[str, Any]]) -> list[str]:
        return (await self.request("POST", f"/v1/indexes/{index}/demonstrations", {"demonstrations": list(demonstrations)}))["ids"]

    async def delete(self, index: str, ids: Sequence[str]) -> int:
        return (await self.request("DELETE", f"/v1/indexes/{index}/demonstrations", {"ids": list(ids)}))["deleted"]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSelectionClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
