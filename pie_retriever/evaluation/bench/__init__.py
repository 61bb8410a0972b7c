"""The benchmark harness behind ``pie-retriever bench`` (needs the ``bench`` extra); never imported by the core.

One results dict (written to ``results/<name>.json``) with up to three sections:

* :mod:`~pie_retriever.evaluation.bench.quality` — task-match retrieval quality of every method in
  :data:`~pie_retriever.evaluation.bench.config.METHODS` on the sets of :mod:`~pie_retriever.evaluation.bench.sets`, vs BM25;
* :mod:`~pie_retriever.evaluation.bench.icl` — in-context learning with a small LLM (backends in
  :mod:`~pie_retriever.evaluation.bench.backends`);
* :mod:`~pie_retriever.evaluation.bench.speed` — build throughput, latency and memory (:mod:`~pie_retriever.evaluation.bench.memory`
  probes RSS in a fresh process, :mod:`~pie_retriever.evaluation.bench.flops` measures FLOP/s and encoding paths).

:mod:`~pie_retriever.evaluation.bench.config` holds :class:`~pie_retriever.evaluation.bench.config.BenchConfig` and the registries,
:mod:`~pie_retriever.evaluation.bench.runner` runs the sections, :mod:`~pie_retriever.evaluation.bench.cli` is the subcommand.
README tables and charts are rendered from the JSON by ``benchmarks/render.py`` in the source tree.
"""
