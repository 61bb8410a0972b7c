"""Decoder LLMs shipped offline: materialise the packaged SmolLM2 GGUF into a plain Hugging Face folder.

Used by the ``smollm2`` model alias (resolved lazily by :mod:`pie_retriever.models`), the vLLM integration
and the benchmark's ICL section.
"""
