"""The selection service (``pie-retriever serve``): an HTTP app over saved indexes (docs/service.md).

Modules: ``config`` (limits, bind check), ``keys`` (API keys and scopes), ``durability`` (write-ahead log),
``indexes`` (served slots, durable writes, reload), ``batching`` (micro-batching), ``metrics`` (Prometheus),
``schemas`` (request/reply bodies), ``middleware`` (body limit), ``routes``/``app`` (FastAPI), ``cli`` (the
command), ``client`` (``SelectionClient``, also ``pie_retriever.client``), ``langchain_client``
(``SelectionServiceRetriever``, a LangChain retriever over the service)."""
