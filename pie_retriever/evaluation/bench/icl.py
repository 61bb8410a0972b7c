"""In-context-learning (ICL) section: does a better-matched demonstration improve the LLM's answer?

For every query (an instruction with optional input and a gold output) and every *condition* (a way of
choosing ``k`` demonstrations from a pool: none, random, BM25, an embedding retriever, ...) the harness

1. picks the demonstrations (``retriever.retrieve_batch(queries, k)`` → lists of :class:`~pie_retriever.Hit`),
2. renders the prompt with :func:`pie_retriever.prompting.fewshot.format_few_shot` (Alpaca template by default),
3. generates greedily with an :class:`~pie_retriever.evaluation.bench.backends.LLMBackend` (transformers, or vLLM),
4. scores the answer: exact match after :func:`normalize_answer` for short-answer tasks
   (:data:`SHORT_ANSWER_TASKS`), ROUGE-L F1 (:func:`rouge_l`) for free text.

Identical prompts are generated once and shared between conditions (two retrievers that pick the same
demonstrations cost one generation). Everything is deterministic: greedy decoding, seeded random picks.
:func:`run_icl_section` is the benchmark's section on the bundled pool.

>>> from pie_retriever.evaluation.bench.icl import run_icl                                      # doctest: +SKIP
>>> from pie_retriever.evaluation.bench.backends import TransformersBackend                    # doctest: +SKIP
>>> report = run_icl(pool, queries, {"none": None, "random": "random", "bm25": bm25, "pie": pie},
...                  TransformersBackend("smollm2"), k=4)                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from pie_retriever._util import DEFAULT_K
from pie_retriever.errors import ConfigError
from pie_retriever.evaluation.bench.backends import LLMBackend, cut_at_stop
from pie_retriever.evaluation.metrics import paired_bootstrap
from pie_retriever.prompting.fewshot import format_few_shot
from pie_retriever.types import Demonstration, Hit

__all__ = [
    "SHORT_ANSWER_TASKS",
    "ContentOracleRetriever",
    "ICLRecord",
    "RandomRetriever",
    "SameTaskRetriever",
    "WeightedRetriever",
    "contains_answer",
    "exact_match",
    "normalize_answer",
    "paired_bootstrap",
    "rouge_l",
    "run_icl",
    "run_icl_section",
]

#: Tasks of the bundled pool whose outputs are one short, exactly checkable answer (pie_retriever/pool/data/README.md).
SHORT_ANSWER_TASKS: frozenset[str] = frozenset({
    "classify|sentiment", "detect|spam", "verify|statement", "identify|part", "categorize|animal",
    "classify|headline", "find|antonym", "find|plural", "count|word", "solve|equation", "solve|problem",
    "convert|unit", "identify|language", "determine|capital", "extract|name",
})

#: Token budgets: a short answer is one line; free text is a few sentences.
MAX_NEW_TOKENS = {"short": 12, "free": 64}
#: Generation stops at these strings (the next "### Instruction:" block of the Alpaca template, or a newline).
STOP = {"short": ["\n"], "free": ["\n\n###", "\n###", "###"]}


# -- scoring ---------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^[-+]?\d[\d,]*\.?\d*$")
_EDGE_PUNCT = " \t\"'`.,;:!?()[]{}*_"


def _canonical_token(tok: str) -> str:
    if _NUMBER.match(tok):
        try:
            value = float(tok.replace(",", ""))
        except ValueError:
            return tok
        return f"{value:.10g}"
    return tok


def normalize_answer(text: str) -> str:
    """Lowercase the first non-empty line, trim quotes/punctuation at the ends, collapse spaces, and write
    numbers canonically (``4.50`` → ``4.5``, ``1,000`` → ``1000``). Internal punctuation is kept
    (``Hannah, Leo`` stays a list of two names)."""
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    line = line.strip().lower().strip(_EDGE_PUNCT)
    tokens = [t.strip(_EDGE_PUNCT) if _NUMBER.match(t.strip(_EDGE_PUNCT)) else t for t in line.split()]
    return " ".join(_canonical_token(t) for t in tokens if t)


def exact_match(prediction: str, gold: str) -> bool:
    """True when both answers are equal after :func:`normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(gold)


def contains_answer(prediction: str, gold: str) -> bool:
    """Lenient check: the normalised gold answer occurs as whole words in the normalised first line of the
    prediction (``The review is negative.`` contains ``negative``). Reported next to exact match, never
    instead of it: it also accepts an answer that lists several options."""
    g, p = normalize_answer(gold), normalize_answer(prediction)
    if not g:
        return False
    return re.search(r"(?<![\w])" + re.escape(g) + r"(?![\w])", p) is not None


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from pie_retriever.errors import require

    rouge = require("rouge_score.rouge_scorer", "bench", "ROUGE-L of the ICL benchmark")
    # rouge-score imports absl, whose handler keeps the sys.stderr of import time (a test's capture, later closed):
    # let it write to whatever sys.stderr is when it logs.
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().python_handler.stream = _CurrentStderr()
    return rouge.RougeScorer(["rougeL"], use_stemmer=False)


class _CurrentStderr:
    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def close(self) -> None:  # logging's shutdown closes handler streams; sys.stderr is not ours to close
        pass

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 by ``rouge-score`` (``rougeL``, its default tokenizer: lowercase alphanumeric tokens, no stemming)."""
    return float(_rouge_scorer().score(str(reference), str(prediction))["rougeL"].fmeasure)


# -- baseline "retrievers" -------------------------------------------------------------------------
def _seed_for(text: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{text}".encode()).digest()[:8], "little")


class RandomRetriever:
    """``k`` demonstrations drawn uniformly from the pool, seeded per query (reproducible, order-free)."""

    def __init__(self, pool: Sequence[Demonstration], seed: int = 0) -> None:
        self.pool = list(pool)
        self.seed = seed

    def retrieve_batch(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[Hit]]:
        out = []
        for q in queries:
            rng = random.Random(_seed_for(q, self.seed))
            picks = rng.sample(range(len(self.pool)), min(k, len(self.pool)))
            out.append([Hit(self.pool[i], 0.0, r) for r, i in enumerate(picks)])
        return out


class SameTaskRetriever:
    """Oracle upper bound: ``k`` random demonstrations *of the query's gold task* (needs the gold labels)."""

    def __init__(self, pool: Sequence[Demonstration], task_of_query: Mapping[str, str], *, label_key: str = "task", seed: int = 0) -> None:
        self.by_task: dict[Any, list[Demonstration]] = {}
        for d in pool:
            self.by_task.setdefault(d.metadata.get(label_key), []).append(d)
        self.task_of_query = dict(task_of_query)
        self.seed = seed

    def retrieve_batch(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[Hit]]:
        out = []
        for q in queries:
            same = self.by_task.get(self.task_of_query.get(q), [])
            rng = random.Random(_seed_for(q, self.seed))
            picks = rng.sample(same, min(k, len(same)))
            out.append([Hit(d, 1.0, r) for r, d in enumerate(picks)])
        return out


class ContentOracleRetriever:
    """Oracle: the ``k`` demonstrations *of the query's gold task* whose content is closest to the query, by a
    :class:`~pie_retriever.retrieval.content.ContentScorer` (the same scorer a task + content retriever uses). ``content_of``
    maps a query to its content text (e.g. instruction + input; default the query itself)."""

    def __init__(self, pool: Sequence[Demonstration], task_of_query: Mapping[str, str], scorer: Any, *, label_key: str = "task",
                 content_of: Mapping[str, str] | None = None) -> None:
        from pie_retriever.retrieval.content import CONTENT_FIELDS

        self.pool = list(pool)
        self.scorer = scorer
        self.scorer.add(list(range(len(self.pool))), self.scorer.features([d.text(CONTENT_FIELDS) for d in self.pool]))
        self.by_task: dict[Any, list[int]] = {}
        for i, d in enumerate(self.pool):
            self.by_task.setdefault(d.metadata.get(label_key), []).append(i)
        self.task_of_query = dict(task_of_query)
        self.content_of = dict(content_of or {})

    def retrieve_batch(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[Hit]]:
        import numpy as np

        features = self.scorer.query_features([self.content_of.get(q, q) for q in queries])
        out = []
        for qi, q in enumerate(queries):
            same = np.asarray(self.by_task.get(self.task_of_query.get(q), []), dtype=np.int64)
            if not len(same):
                out.append([])
                continue
            scores = self.scorer.scores(features, qi, same)
            order = np.argsort(-scores, kind="stable")[:k]
            out.append([Hit(self.pool[int(same[j])], float(scores[j]), r) for r, j in enumerate(order)])
        return out


class WeightedRetriever:
    """A :class:`~pie_retriever.PIERetriever` queried with a fixed ``content_weight`` (one ICL condition per weight);
    ``content_of`` maps a query to its content text (instruction + input), as :class:`FewShotPromptBuilder` does."""

    def __init__(self, retriever: Any, content_weight: float, content_of: Mapping[str, str] | None = None) -> None:
        self.retriever = retriever
        self.content_weight = content_weight
        self.content_of = dict(content_of or {})

    def retrieve_batch(self, queries: Sequence[str], k: int = DEFAULT_K) -> list[list[Hit]]:
        queries = list(queries)
        content = [self.content_of.get(q, q) for q in queries] if self.content_weight > 0 else None
        return self.retriever.retrieve_batch(queries, k, content_weight=self.content_weight, content_queries=content)


# -- the harness -----------------------------------------------------------------------------------
@dataclass
class ICLRecord:
    query_id: str | None
    task: Any
    kind: str  # "short" or "free"
    prediction: str
    gold: str
    score: float
    contains: float
    demo_ids: list[str] = field(default_factory=list)
    demo_task_match: float = float("nan")


def _condition_hits(retriever: Any, pool: Sequence[Demonstration], queries: list[str], k: int, seed: int) -> list[list[Hit]]:
    if retriever is None or retriever == "none" or k == 0:
        return [[] for _ in queries]
    if isinstance(retriever, str):
        if retriever != "random":
            msg = f"Unknown retriever string {retriever!r}; use None/'none', 'random', or an object with retrieve_batch(queries, k)."
            raise ConfigError(msg)
        retriever = RandomRetriever(pool, seed=seed)
    if not hasattr(retriever, "retrieve_batch"):
        msg = f"{type(retriever).__name__} has no retrieve_batch(queries, k) method."
        raise TypeError(msg)
    return retriever.retrieve_batch(queries, k)


def _mean(xs: Iterable[float]) -> float:
    xs = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return float(sum(xs) / len(xs)) if xs else float("nan")


def _pick_and_render(pool: Sequence[Demonstration], queries: list[Demonstration], retrievers: Mapping[str, Any], k: int,
                     seed: int, template: str) -> tuple[dict[str, list[list[Hit]]], dict[str, list[str]], dict[str, float]]:
    """Demonstrations and rendered prompts of every (condition, query), and each condition's retrieval seconds."""
    texts = [q.instruction for q in queries]
    hits_of: dict[str, list[list[Hit]]] = {}
    prompts: dict[str, list[str]] = {}
    retrieval_s: dict[str, float] = {}
    for name, retriever in retrievers.items():
        t0 = time.perf_counter()
        hits = _condition_hits(retriever, pool, texts, k, seed)
        retrieval_s[name] = time.perf_counter() - t0
        hits_of[name] = hits
        prompts[name] = [format_few_shot(h, q.instruction, q.input, template=template) for h, q in zip(hits, queries)]
    return hits_of, prompts, retrieval_s


def _generate_once(backend: LLMBackend, todo: Sequence[tuple[str, str]], show_progress: bool | None) -> dict[tuple[str, str], str]:
    """Generate each distinct ``(prompt, kind)`` once, short answers first, in chunks of a few backend batches."""
    from tqdm.auto import tqdm

    answers: dict[tuple[str, str], str] = {}
    bar = tqdm(total=len(todo), desc="ICL generation", unit="prompt", disable=None if show_progress is not False else True)
    try:
        for kind in ("short", "free"):
            keys = [key for key in todo if key[1] == kind]
            step = max(1, getattr(backend, "batch_size", 8)) * 4
            for start in range(0, len(keys), step):
                chunk = keys[start:start + step]
                outs = backend.generate([p for p, _ in chunk], max_new_tokens=MAX_NEW_TOKENS[kind], stop=STOP[kind])
                for key, text in zip(chunk, outs):
                    answers[key] = cut_at_stop(text, STOP[kind]).strip()  # also for backends that ignore `stop`
                bar.update(len(chunk))
    finally:
        bar.close()
    return answers


def _record(q: Demonstration, kind: str, pred: str, hits: list[Hit], label_key: str) -> ICLRecord:
    score = float(exact_match(pred, q.output)) if kind == "short" else rouge_l(pred, q.output)
    task = q.metadata.get(label_key)
    match = _mean(float(h.demonstration.metadata.get(label_key) == task) for h in hits) if hits else float("nan")
    contains = float(contains_answer(pred, q.output)) if kind == "short" else float("nan")
    return ICLRecord(q.id, task, kind, pred, q.output, score, contains, [h.demonstration.id for h in hits], match)


def _summarise(records: list[ICLRecord], retrieval_s: float) -> dict[str, Any]:
    by_task: dict[str, list[float]] = {}
    for r in records:
        by_task.setdefault(str(r.task), []).append(r.score)
    return {
        "score": _mean(r.score for r in records),
        "exact_match": _mean(r.score for r in records if r.kind == "short"),
        "contains": _mean(r.contains for r in records if r.kind == "short"),
        "rouge_l": _mean(r.score for r in records if r.kind == "free"),
        "demo_task_match": _mean(r.demo_task_match for r in records),
        "retrieval_s": round(retrieval_s, 4),
        "by_task": {t: _mean(v) for t, v in sorted(by_task.items())},
        "records": [r.__dict__ for r in records],
    }


def run_icl(
    pool: Sequence[Demonstration],
    queries: Sequence[Demonstration],
    retrievers: Mapping[str, Any],
    backend: LLMBackend,
    *,
    k: int = DEFAULT_K,
    label_key: str = "task",
    short_tasks: Iterable[str] | None = None,
    template: str = "alpaca",
    seed: int = 0,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Run every condition on every query and score the answers.

    Args:
        pool: the demonstrations the retrievers draw from (used by ``"random"``).
        queries: demonstrations whose ``output`` is the gold answer and ``metadata[label_key]`` the task.
        retrievers: condition name → ``None``/``"none"`` (zero-shot), ``"random"``, or any object with
            ``retrieve_batch(list_of_instructions, k) -> list[list[Hit]]``.
        backend: an :class:`~pie_retriever.evaluation.bench.backends.LLMBackend`.
        short_tasks: tasks scored by exact match (default :data:`SHORT_ANSWER_TASKS`); others by ROUGE-L.

    Returns a JSON-serialisable dict: per condition ``score`` (mean over queries of exact match or ROUGE-L),
    ``exact_match`` (short-answer queries), ``rouge_l`` (free-text queries), ``demo_task_match`` (share of
    the demonstrations with the query's task), ``by_task`` and the per-query ``records``; plus the number
    of generations and tokens.
    """
    queries = list(queries)
    short = frozenset(SHORT_ANSWER_TASKS if short_tasks is None else short_tasks)
    kinds = ["short" if q.metadata.get(label_key) in short else "free" for q in queries]
    started = time.perf_counter()
    hits_of, prompts, retrieval_s = _pick_and_render(pool, queries, retrievers, k, seed, template)
    todo = list(dict.fromkeys((p, kind) for name in retrievers for p, kind in zip(prompts[name], kinds)))
    gen_started = time.perf_counter()
    answers = _generate_once(backend, todo, show_progress)
    gen_s = time.perf_counter() - gen_started
    conditions = {}
    for name in retrievers:
        records = [_record(q, kind, answers[(p, kind)], hits, label_key)
                   for q, kind, p, hits in zip(queries, kinds, prompts[name], hits_of[name])]
        conditions[name] = _summarise(records, retrieval_s[name])
    return {
        "k": k,
        "n_queries": len(queries),
        "n_short": kinds.count("short"),
        "n_free": kinds.count("free"),
        "template": template,
        "backend": getattr(backend, "name", type(backend).__name__),
        "n_generations": len(todo),
        "n_prompts": sum(len(v) for v in prompts.values()),
        "generation_s": round(gen_s, 2),
        "prompt_tokens": getattr(backend, "prompt_tokens", None),
        "generated_tokens": getattr(backend, "generated_tokens", None),
        "wall_s": round(time.perf_counter() - started, 2),
        "conditions": conditions,
    }


# -- the benchmark section -------------------------------------------------------------------------
def spread_over_tasks(queries: Sequence[Demonstration], limit: int | None) -> list[Demonstration]:
    """At most ``limit`` queries, round-robin over their tasks so that a small cap still covers many tasks."""
    queries = list(queries)
    if not limit or limit >= len(queries):
        return queries
    by: dict[str, list[Demonstration]] = {}
    for q in queries:
        by.setdefault(q.metadata["task"], []).append(q)
    picked: list[Demonstration] = []
    depth = 0
    while len(picked) < limit:
        for task in sorted(by):
            if depth < len(by[task]) and len(picked) < limit:
                picked.append(by[task][depth])
        depth += 1
    return picked


def _conditions(cfg: Any, pool: list[Demonstration], queries: list[Demonstration], encoders: Any,
                pie_method: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Condition name → retriever (or None / "random"), and their labels, for ``cfg.icl_conditions``."""
    from pie_retriever.evaluation.bench.config import methods
    from pie_retriever.retrieval.bm25 import BM25Retriever
    from pie_retriever.retrieval.retriever import PIERetriever

    all_methods = methods()
    conditions: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for c in cfg.icl_conditions:
        if c == "none":
            conditions[c], labels[c] = None, "no demonstrations (zero-shot)"
        elif c == "random":
            conditions[c], labels[c] = "random", "random demonstrations (seeded)"
        elif c == "bm25":
            conditions[c], labels[c] = BM25Retriever(pool), all_methods["bm25"].label
        elif c == "minilm":
            minilm = all_methods["minilm"]
            conditions[c], labels[c] = PIERetriever.from_demonstrations(pool, encoders.get(minilm)), minilm.label
        elif c == "pie":
            conditions[c] = PIERetriever.from_demonstrations(pool, encoders.get(pie_method))
            labels[c] = f"PIE: {pie_method.label}"
        elif c == "oracle":
            conditions[c] = SameTaskRetriever(pool, {q.instruction: q.metadata["task"] for q in queries}, seed=cfg.seed)
            labels[c] = "oracle: random demonstrations of the gold task"
    return conditions, labels


def _add_bm25_deltas(report: dict[str, Any], seed: int) -> None:
    """Each condition's score minus BM25's, paired bootstrap interval; predictions cut to 80 characters."""
    if "bm25" in report["conditions"]:
        base = [r["score"] for r in report["conditions"]["bm25"]["records"]]
        for name, cond in report["conditions"].items():
            if name != "bm25":
                diff = paired_bootstrap([r["score"] for r in cond["records"]], base, seed=seed)
                cond["minus_bm25"] = {k: round(v, 4) for k, v in diff.items()}
    # keep the JSON small: records without the gold (it is in the package) and with short predictions
    for cond in report["conditions"].values():
        for r in cond["records"]:
            r["prediction"] = r["prediction"][:80]


def run_icl_section(cfg: Any, encoders: Any = None) -> dict[str, Any]:
    """ICL on the bundled pool's short-answer held-out queries (a spread over tasks when capped).

    ``cfg`` is a :class:`~pie_retriever.evaluation.bench.config.BenchConfig`, ``encoders`` an
    :class:`~pie_retriever.evaluation.bench.cache.EncoderCache` shared with the other sections.
    """
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.evaluation.bench.backends import make_backend
    from pie_retriever.evaluation.bench.cache import EncoderCache
    from pie_retriever.evaluation.bench.config import methods
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    encoders = encoders or EncoderCache()
    all_methods = methods()
    pool = load_bundled_pool()
    queries = spread_over_tasks([q for q in load_bundled_queries() if q.metadata.get("task") in SHORT_ANSWER_TASKS], cfg.icl_queries)
    pie_name = "default" if DEFAULT_MODEL != "minilm" else "pie-zeroshot"
    conditions, labels = _conditions(cfg, pool, queries, encoders, all_methods[pie_name])
    options: dict[str, Any] = {"batch_size": cfg.icl_batch_size} if cfg.icl_backend == "transformers" else {}
    t0 = time.perf_counter()
    backend = make_backend(cfg.icl_backend, cfg.icl_model, **options)
    load_s = time.perf_counter() - t0
    report = run_icl(pool, queries, conditions, backend, k=cfg.icl_k, seed=cfg.seed, show_progress=cfg.show_progress)
    report["llm"] = {"backend": cfg.icl_backend, "model": cfg.icl_model, "path": getattr(backend, "path", None),
                     "dtype": getattr(backend, "dtype", None), "load_s": round(load_s, 1),
                     "batch_size": getattr(backend, "batch_size", None)}
    report["labels"] = labels
    report["pie_method"] = pie_name
    report["tasks"] = sorted({q.metadata["task"] for q in queries})
    _add_bm25_deltas(report, cfg.seed)
    del backend
    return report
