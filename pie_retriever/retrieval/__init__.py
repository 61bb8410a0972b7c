"""The retrieval stage: ``PIERetriever`` (pool + encoder + index: add, delete, retrieve, batches, filters, MMR, task +
content scores), its persistence (``persistence``, ``manifest``), the BM25 baseline (``bm25``), distributed indexing
with Ray (``distributed``) and the ``index``/``search``/``add``/``delete`` commands (``cli``)."""
