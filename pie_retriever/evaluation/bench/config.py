"""What a benchmark run measures: the section, set and method registries and :class:`BenchConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from pie_retriever._util import DEFAULT_K
from pie_retriever.errors import ConfigError

__all__ = [
    "BACKENDS",
    "BM25_DESCRIPTION",
    "FULL_METHODS",
    "ICL_CONDITIONS",
    "METHODS",
    "QUICK_METHODS",
    "SECTIONS",
    "SETS",
    "SET_SOURCES",
    "BenchConfig",
    "Method",
    "artifact_manifest",
    "check_choices",
    "methods",
    "training_sources",
]

SECTIONS: dict[str, str] = {
    "quality": "task-match retrieval quality (P@1, P@4, nDCG@10, MRR@10) on IEB and the bundled pool",
    "icl": "end-to-end in-context learning with SmolLM2-135M-Instruct on the bundled short-answer tasks",
    "speed": "index-build throughput, query latency, queries/s, RSS, FLOP/s; default model vs BM25",
}

SETS: dict[str, str] = {
    "ieb-eft": "IEB eft_test, leave-one-out: every sample queries all the others (3,291 queries, 145 tasks)",
    "ieb-ift": "IEB ift_test, pool→query: one sample of each 2-sample label queries the rest of ift_test (398 queries, 1 relevant each)",
    "bundled": "bundled pool (249 demos, 30 tasks) ← its 117 held-out queries (topic trap: same topic, other task)",
    "user": "your pool (--pool FILE --label-field NAME), leave-one-out",
}

#: quality set → the IEB training source whose labels it is built from
SET_SOURCES = {"ieb-eft": "eft_test", "ieb-ift": "ift_test"}

#: Query backends of the speed section's per-backend rows (bench.speed_backends).
BACKENDS: dict[str, str] = {
    "torch": "the default model through transformers/torch (fp32; 1 thread for one query, all cores for batches)",
    "onnx-int8": "the default model's dynamic-int8 ONNX export through onnxruntime (1 thread for one query); built once into the cache",
}

BM25_DESCRIPTION = "bm25s 0.3, regex word tokenizer (\\w\\w+), lowercase, English stopwords, no stemming, Lucene BM25 k1=1.5, b=0.75"


@dataclass(frozen=True)
class Method:
    label: str
    description: str
    kind: str  # "bm25" | "tfidf" | "encoder"
    model: str | None = None
    prompt: str | None = None


def artifact_manifest(model: str) -> dict[str, Any]:
    """The ``pie_artifact.json`` of a trained model spec; {} for untrained or unresolvable models."""
    try:
        from pie_retriever.encoders.artifact import read_manifest
        from pie_retriever.encoders.models import resolve_model

        artifact = resolve_model(model).artifact
        return {} if artifact is None else read_manifest(artifact)
    except Exception:  # a missing optional model is reported elsewhere
        return {}


def methods() -> dict[str, Method]:
    """Every quality method by name (the default model's description is read from its artifact)."""
    from pie_retriever.encoders.models import DEFAULT_MODEL, MODEL_ALIASES

    default_desc = f"the library default model {DEFAULT_MODEL!r} with its own prompt and pooling"
    meta = artifact_manifest(DEFAULT_MODEL)
    if meta:
        default_desc = (f"{DEFAULT_MODEL}: {MODEL_ALIASES[DEFAULT_MODEL].description} ({meta.get('prompt', '?')} "
                        f"prompt, {meta.get('pooling', '?')} pooling)")
    return {
        "bm25": Method("BM25 (bm25s)", BM25_DESCRIPTION, "bm25"),
        "tfidf": Method("TF-IDF", "scikit-learn TfidfVectorizer defaults fitted on the pool, cosine", "tfidf"),
        "minilm": Method("MiniLM, plain", "all-MiniLM-L6-v2, no prompt, mean pooling", "encoder", "minilm", "plain"),
        "pie-zeroshot": Method("MiniLM + PIE prompt, zero-shot", "all-MiniLM-L6-v2, the paper's PIE prompt, mean pooling, no training",
                               "encoder", "minilm", "pie"),
        "default": Method(f"default model ({DEFAULT_MODEL})", default_desc, "encoder", DEFAULT_MODEL, None),
        "pie-minilm": Method("pie-minilm (short instructions)", "all-MiniLM-L6-v2 contrastively tuned on task labels of "
                             "short instructions only (the first default, kept as an alias)", "encoder", "pie-minilm", None),
        "smollm2-pie": Method("SmolLM2-135M + PIE prompt, zero-shot", "SmolLM2-135M-Instruct decoder, PIE prompt, last-token pooling "
                              "averaged over the last two layers (the paper's decoder recipe), no training", "encoder", "smollm2", "pie"),
    }


METHODS: dict[str, str] = {name: m.description for name, m in methods().items()}

SLOW_METHODS = ("smollm2-pie",)  # run only on sets with at most BenchConfig.decoder_max_texts texts
MAX_LABELS_BY_TASK = 60  # sets with at most this many labels also get P@4 per task in the JSON
FULL_METHODS = ("bm25", "tfidf", "minilm", "pie-zeroshot", "pie-minilm", "default", "smollm2-pie")
QUICK_METHODS = ("bm25", "tfidf", "minilm", "pie-zeroshot", "default")
ICL_CONDITIONS = ("none", "random", "bm25", "minilm", "pie", "oracle")


def training_sources(method: Method) -> list[str]:
    """IEB sources a trained artifact was fitted on (from its ``pie_artifact.json``); [] for untrained models."""
    if method.kind != "encoder" or not method.model:
        return []
    meta = artifact_manifest(method.model)
    sources = (meta.get("training") or {}).get("sources") or []
    return [str(x) for x in sources]


def check_choices(kind: str, values: Iterable[Any], registry: Mapping[str, Any]) -> None:
    """ConfigError naming every value of ``values`` that is not a key of ``registry`` (and the valid keys)."""
    bad = [v for v in values if v not in registry]
    if bad:
        msg = f"Unknown {kind}(s) {bad}; choose from: {', '.join(registry)}."
        raise ConfigError(msg)


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (stored in the results JSON)."""

    name: str = "bench"
    quick: bool = False
    sections: tuple[str, ...] = ("quality", "icl", "speed")
    sets: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    ieb_dir: str | None = None  # --data; None: $PIE_IEB_DIR, else the IEB sets are skipped with a note
    pool: str | None = None
    label_field: str | None = None
    eft_limit: int | None = None  # subsample eft_test to this many samples (quick)
    decoder_max_texts: int | None = 1500  # the decoder PIE method skips sets with more texts (None: no limit)
    icl_queries: int | None = None  # cap on ICL queries (None: every short-answer query)
    icl_k: int = DEFAULT_K
    icl_backend: str = "transformers"
    icl_model: str = "smollm2"
    icl_conditions: tuple[str, ...] = ICL_CONDITIONS
    icl_batch_size: int = 4
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    encode_limit: int = 10_000
    n_single: int = 100
    batch_queries: int = 256
    compare_texts: int = 512
    compare_rounds: int = 2
    matmul_seconds: float = 2.0
    memory_sizes: tuple[int, ...] | None = None  # sizes whose RSS is probed in a fresh process (None: all; quick: the largest)
    threads: int | str | None = "auto"  # int, None (torch's default) or "auto" (see runner.resolve_threads)
    backends: tuple[str, ...] = ("torch", "onnx-int8")  # speed rows per query backend (bench.speed_backends.BACKENDS)
    storages: tuple[str, ...] = ("fp32", "fp16", "int8")  # ... and per vector storage option (checked against VECTOR_STORAGE)
    hog: int = 2  # busy-loop processes for the speed section's "loaded machine" column
    seed: int = 0
    out_dir: str = "results"
    show_progress: bool | None = None

    def __post_init__(self) -> None:
        check_choices("section", self.sections, SECTIONS)
        if self.methods is not None:
            check_choices("method", self.methods, METHODS)
        if self.sets is not None:
            check_choices("set", self.sets, SETS)
            if "user" in self.sets and not self.pool:
                msg = "The 'user' set needs --pool FILE (and --label-field NAME unless the pool has metadata.task)."
                raise ConfigError(msg)
        check_choices("ICL condition", self.icl_conditions, ICL_CONDITIONS)
        from pie_retriever.index.faiss_index import VECTOR_STORAGE

        check_choices("speed backend", self.backends, BACKENDS)
        check_choices("vector storage", self.storages, VECTOR_STORAGE)
        if not self.sizes or any(int(s) < 10 for s in self.sizes):
            msg = f"sizes must be pool sizes >= 10, got {self.sizes!r}."
            raise ConfigError(msg)

    @property
    def method_names(self) -> tuple[str, ...]:
        """The quality methods to run (the preset's when none were chosen)."""
        return tuple(self.methods or (QUICK_METHODS if self.quick else FULL_METHODS))

    @classmethod
    def quick_preset(cls, **overrides: Any) -> BenchConfig:
        """About a minute on 2 cores: small subsets everywhere, no decoder encoder."""
        base = {
            "name": "bench-quick", "quick": True, "methods": QUICK_METHODS, "sets": ("ieb-eft", "bundled"),
            "eft_limit": 200, "icl_queries": 4,
            "icl_conditions": ("none", "random", "bm25", "pie"),
            "sizes": (500, 2_000, 20_000), "encode_limit": 500, "n_single": 20, "batch_queries": 64,
            "compare_texts": 64, "compare_rounds": 1, "matmul_seconds": 0.3,
            "backends": ("torch",), "storages": ("fp32", "fp16"),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)
