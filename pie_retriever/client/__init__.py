"""``pie_retriever.client``: the Python client of the selection service (``pie-retriever serve``).

``from pie_retriever.client import SelectionClient``; the code lives in :mod:`pie_retriever.service.client`
(this package only names it, so the client belongs to the service room). ``SelectionServiceRetriever``, the
LangChain retriever over the service, is imported on first use (it needs ``langchain-core``)."""

from typing import Any

from pie_retriever.service.client import AsyncSelectionClient, SelectionClient, SelectionError

__all__ = ["AsyncSelectionClient", "SelectionClient", "SelectionError", "SelectionServiceRetriever"]


def __getattr__(name: str) -> Any:
    if name == "SelectionServiceRetriever":
        from pie_retriever.service.langchain_client import SelectionServiceRetriever

        return SelectionServiceRetriever
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
