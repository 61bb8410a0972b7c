"""``SelectionServiceRetriever``: a LangChain ``BaseRetriever`` over a running ``pie-retriever serve``, so a LangChain
app in another process uses the service the way it uses ``PIELangChainRetriever`` in-process (the same documents:
``page_content`` from the demonstration's fields, ``metadata`` with id, score, 0-based rank, instruction, input, output)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, PrivateAttr, SecretStr

from pie_retriever.service.client import AsyncSelectionClient, SelectionClient


def record_to_document(hit: dict[str, Any], page_content_fields: tuple[str, ...] = ("instruction", "input")) -> Document:
    """The document ``PIELangChainRetriever`` makes for the same hit (the service's rank is 1-based, LangChain's 0-based)."""
    metadata = dict(hit.get("metadata") or {})
    metadata.update(id=hit["id"], score=float(hit["score"]), rank=int(hit["rank"]) - 1,
                    instruction=hit["instruction"], input=hit["input"], output=hit["output"])
    text = "\n".join(hit[f] for f in page_content_fields if hit.get(f))
    return Document(page_content=text, metadata=metadata, id=hit["id"])


class SelectionServiceRetriever(BaseRetriever):
    """Documents whose task matches the query, from index ``index`` of the service at ``base_url``.

    ``SelectionServiceRetriever(base_url="http://127.0.0.1:8080", index="pool", api_key="...", k=4).invoke("...")``;
    ``filter``, ``content_weight``, ``mmr`` and ``mmr_lambda`` are sent with every search."""

    base_url: str = "http://127.0.0.1:8080"
    index: str
    api_key: SecretStr | None = None
    k: int = 4
    filter: dict[str, Any] | None = None
    content_weight: float | None = None
    mmr: bool = False
    mmr_lambda: float = 0.5
    page_content_fields: tuple[str, ...] = ("instruction", "input")
    timeout: float = 30.0
    retries: int = 3

    model_config = ConfigDict(extra="forbid")
    _sync: SelectionClient | None = PrivateAttr(None)

    def _options(self) -> dict[str, Any]:
        return {"filter": self.filter, "content_weight": self.content_weight, "mmr": self.mmr or None,
                "mmr_lambda": self.mmr_lambda if self.mmr else None}

    def _key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self._sync is None:
            self._sync = SelectionClient(self.base_url, api_key=self._key(), timeout=self.timeout, retries=self.retries)
        hits = self._sync.search(self.index, query, k=self.k, **self._options())
        return [record_to_document(h, self.page_content_fields) for h in hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        async with AsyncSelectionClient(self.base_url, api_key=self._key(), timeout=self.timeout, retries=self.retries) as c:
            hits = await c.search(self.index, query, k=self.k, **self._options())
        return [record_to_document(h, self.page_content_fields) for h in hits]
