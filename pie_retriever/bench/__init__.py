"""The benchmark harness behind ``pie-retriever bench`` (needs the ``bench`` extra); never imported by the core.

One results dict (written to ``results/<name>.json``) with up to three sections:

* :mod:`~pie_retriever.bench.quality` — task-match retrieval quality of every method in
  :data:`~pie_retriever.bench.config.METHODS` on the sets of :mod:`~pie_retriever.bench.sets`, vs BM25;
* :mod:`~pie_retriever.bench.icl` — in-context learning with a small LLM (backends in
  :mod:`~pie_retriever.bench.backends`);
* :mod:`~pie_retriever.bench.speed` — build throughput, latency and memory (:mod:`~pie_retriever.bench.memory`
  probes RSS in a fresh process, :mod:`~pie_retriever.bench.flops` measures FLOP/s and encoding paths).

:mod:`~pie_retriever.bench.config` holds :class:`~pie_retriever.bench.config.BenchConfig` and the registries,
:mod:`~pie_retriever.bench.runner` runs the sections, :mod:`~pie_retriever.bench.cli` is the subcommand.
README tables and charts are rendered from the JSON by ``benchmarks/render.py`` in the source tree.
"""
