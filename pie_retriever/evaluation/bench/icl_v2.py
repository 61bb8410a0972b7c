"""ICL benchmark v2: task + content selection, chosen on a dev split and reported on a test split.

Sets (:data:`ICL_SETS`): the bundled pool with its 117 held-out queries (30 tasks: 15 short-answer scored by
exact match, 15 free-text scored by ROUGE-L) and the templated-prompt set of
:mod:`pie_retriever.evaluation.bench.templated` (42 short-answer tasks, 336 queries, each a template around a passage
that also stands in the pool under other templates). Each set's queries are split per task into **dev** and
**test** halves (seeded); the two splits share tasks but no query.

Protocol (:func:`run_icl_v2`):

1. **dev**: every condition of the table plus the PIE retriever at each ``content_weight`` of the grid, for each
   content scorer; the pair (scorer, weight) with the best pooled dev score is *chosen* (ties: lower weight,
   then the cheaper scorer in :data:`SCORER_COST_ORDER`).
2. **test**: the table's rows with the chosen pair: none, random, BM25, plain MiniLM, PIE task-only
   (``content_weight=0``), PIE task + content (chosen), PIE with ``content_weight=1`` (content only among the
   task candidates), oracle same-task random, oracle same-task + best content (same scorer). Every row
   gets a paired bootstrap 95% interval of its difference to PIE task-only and to the same-task random oracle.

The task query is the instruction (the pools embed instructions); the content query is the instruction followed by
its input, as :class:`~pie_retriever.prompting.builder.FewShotPromptBuilder` sends it. The score of a query is exact match (short-answer tasks) or ROUGE-L F1 (free text); ``task_match`` is the share
of the chosen demonstrations with the query's task (P@k of the retriever).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from pie_retriever._util import DEFAULT_K
from pie_retriever.evaluation.bench.icl import SHORT_ANSWER_TASKS, ContentOracleRetriever, SameTaskRetriever, WeightedRetriever, run_icl
from pie_retriever.evaluation.metrics import paired_bootstrap
from pie_retriever.types import Demonstration

__all__ = ["ICL_SETS", "SCORER_COST_ORDER", "ICLv2Config", "choose_weight", "format_tables", "load_icl_set", "run_icl_v2",
           "split_queries", "task_match"]

#: Cheaper scorers first (the tie-break when two choices score the same on dev).
SCORER_COST_ORDER = ("bm25", "minilm")


def _bundled() -> tuple[list[Demonstration], list[Demonstration], frozenset[str]]:
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    return load_bundled_pool(), load_bundled_queries(), SHORT_ANSWER_TASKS


def _templated() -> tuple[list[Demonstration], list[Demonstration], frozenset[str]]:
    from pie_retriever.evaluation.bench.templated import TASKS, templated_set

    pool, queries = templated_set()
    return pool, queries, frozenset(TASKS)


#: set name → loader ``() -> (pool, queries, short-answer tasks)``
ICL_SETS: dict[str, Callable[[], tuple[list[Demonstration], list[Demonstration], frozenset[str]]]] = {
    "bundled": _bundled, "templated": _templated,
}


@dataclass
class ICLv2Config:
    """What an ICL v2 run depends on (stored in the results JSON)."""

    sets: tuple[str, ...] = ("bundled", "templated")
    k: int = DEFAULT_K
    backend: str = "vllm"
    model: str = "smollm2"
    dtype: str = "bfloat16"
    batch_size: int = 8  # transformers backend only
    weights: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # content weights tried on dev (0 is always a row)
    scorers: tuple[str, ...] = ("bm25", "minilm")
    task_model: str | None = None  # None: the library default model
    seed: int = 0
    limit: int | None = None  # at most this many queries per set and split (round-robin over tasks); None: all
    show_progress: bool | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def load_icl_set(name: str) -> tuple[list[Demonstration], list[Demonstration], frozenset[str]]:
    """``(pool, queries, short-answer tasks)`` of a set of :data:`ICL_SETS`."""
    from pie_retriever._util import check_choice

    return ICL_SETS[check_choice("ICL set", name, ICL_SETS)]()


def split_queries(queries: Sequence[Demonstration], seed: int = 0) -> tuple[list[Demonstration], list[Demonstration]]:
    """``(dev, test)``: each task's queries shuffled (seeded by task) and dealt alternately, dev first."""
    by: dict[str, list[Demonstration]] = {}
    for q in queries:
        by.setdefault(str(q.metadata.get("task")), []).append(q)
    dev: list[Demonstration] = []
    test: list[Demonstration] = []
    for task in sorted(by):
        items = sorted(by[task], key=lambda d: str(d.id))
        random.Random(f"{seed}-{task}").shuffle(items)
        dev += items[0::2]
        test += items[1::2]
    return dev, test


def _cond(scorer: str, weight: float) -> str:
    return "pie" if weight == 0 else f"pie+{scorer}@{weight:g}"


class _Models:
    """The encoders shared by every set: the task model, plain MiniLM (a baseline and the dense content scorer)."""

    def __init__(self, task_model: str | None) -> None:
        from pie_retriever.encoders.models import DEFAULT_MODEL
        from pie_retriever.encoders.transformer import TransformerEncoder

        self.task_name = task_model or DEFAULT_MODEL
        self.task = TransformerEncoder(self.task_name)
        self.minilm = TransformerEncoder("minilm", prompt="plain", pooling="mean")

    def scorer(self, name: str) -> Any:
        from pie_retriever.retrieval.content import BM25Content, DenseContent

        return DenseContent(self.minilm) if name == "minilm" else BM25Content()


def _conditions(pool: list[Demonstration], queries: list[Demonstration], models: _Models, pairs: Sequence[tuple[str, float]],
                oracle_scorers: Sequence[str]) -> dict[str, Any]:
    """Condition name → retriever for one set: the baselines, PIE at each (scorer, weight) pair and the oracles."""
    from pie_retriever.retrieval.bm25 import BM25Retriever
    from pie_retriever.retrieval.retriever import PIERetriever

    task_of = {q.instruction: q.metadata["task"] for q in queries}
    content_of = {q.instruction: q.text(("instruction", "input")) for q in queries}
    pies = {s: PIERetriever.from_demonstrations(pool, models.task, content_scorer=models.scorer(s)) for s in {s for s, _ in pairs}}
    conditions: dict[str, Any] = {
        "none": None, "random": "random", "bm25": BM25Retriever(pool),
        "minilm": PIERetriever.from_demonstrations(pool, models.minilm, content_scorer=None),
    }
    for s, w in pairs:
        conditions[_cond(s, w)] = WeightedRetriever(pies[s], w, content_of)
    conditions["oracle"] = SameTaskRetriever(pool, task_of)
    for s in oracle_scorers:
        conditions[f"oracle+{s}"] = ContentOracleRetriever(pool, task_of, models.scorer(s), content_of=content_of)
    return conditions


def _limit(queries: list[Demonstration], limit: int | None) -> list[Demonstration]:
    from pie_retriever.evaluation.bench.icl import spread_over_tasks

    return spread_over_tasks(queries, limit) if limit else queries


def _run_split(cfg: ICLv2Config, data: dict[str, Any], split: str, backend: Any, models: _Models,
               pairs: Sequence[tuple[str, float]], oracle_scorers: Sequence[str]) -> dict[str, Any]:
    """Every condition on one split of every set; per set the harness report, pooled summaries and intervals."""
    per_set: dict[str, Any] = {}
    for name, (pool, splits, short) in data.items():
        queries = splits[split]
        conditions = _conditions(pool, queries, models, pairs, oracle_scorers)
        report = run_icl(pool, queries, conditions, backend, k=cfg.k, short_tasks=short, seed=cfg.seed, show_progress=cfg.show_progress)
        per_set[name] = report
    return {"sets": per_set, "pooled": _pooled(per_set, cfg.seed)}


def _pooled(per_set: dict[str, Any], seed: int) -> dict[str, Any]:
    """Per condition over every set's queries: mean score, exact match, ROUGE-L, task match, and intervals."""
    names = list(next(iter(per_set.values()))["conditions"])
    records = {c: [r for rep in per_set.values() for r in rep["conditions"][c]["records"]] for c in names}
    scores = {c: [r["score"] for r in recs] for c, recs in records.items()}
    out: dict[str, Any] = {}
    for c, recs in records.items():
        short = [r["score"] for r in recs if r["kind"] == "short"]
        free = [r["score"] for r in recs if r["kind"] == "free"]
        match = [r["demo_task_match"] for r in recs if r["demo_task_match"] == r["demo_task_match"]]
        out[c] = {"score": _mean(scores[c]), "exact_match": _mean(short), "rouge_l": _mean(free),
                  "task_match": _mean(match), "n": len(recs), "n_short": len(short), "n_free": len(free)}
        for ref in ("pie", "oracle"):
            if ref in scores and c != ref:
                out[c][f"minus_{ref}"] = {k: round(v, 4) for k, v in paired_bootstrap(scores[c], scores[ref], seed=seed).items()}
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return round(float(sum(xs) / len(xs)), 4) if xs else None


def choose_weight(pooled: dict[str, Any], scorers: Sequence[str], weights: Sequence[float]) -> tuple[str, float]:
    """The (scorer, weight) with the best pooled dev score; ties go to the lower weight, then the cheaper scorer."""
    order = sorted(scorers, key=lambda s: SCORER_COST_ORDER.index(s) if s in SCORER_COST_ORDER else len(SCORER_COST_ORDER))
    best = (order[0], 0.0)
    best_score = pooled["pie"]["score"]
    for w in sorted(weights):
        for s in order:
            score = pooled[_cond(s, w)]["score"]
            if w > 0 and score is not None and score > best_score + 1e-9:
                best, best_score = (s, w), score
    return best


def _compact(split: dict[str, Any]) -> None:
    """Keep the JSON small: per record the query id, task, kind, score, task match, demo ids and 60 characters of the answer."""
    keep = ("query_id", "task", "kind", "score", "demo_task_match", "demo_ids", "prediction")
    for rep in split["sets"].values():
        for cond in rep["conditions"].values():
            cond["records"] = [{k: (r[k][:60] if k == "prediction" else r[k]) for k in keep} for r in cond["records"]]
            cond.pop("by_task", None)


def task_match(data: dict[str, Any], models: _Models, scorers: Sequence[str], weights: Sequence[float], k: int = DEFAULT_K) -> dict[str, Any]:
    """Task-match P@k of PIE on every query of each set (both splits) at each (scorer, weight)."""
    from pie_retriever.retrieval.retriever import PIERetriever

    out: dict[str, Any] = {}
    for name, (pool, splits, _) in data.items():
        queries = splits["dev"] + splits["test"]
        texts = [q.instruction for q in queries]
        content = [q.text(("instruction", "input")) for q in queries]
        rows: dict[str, Any] = {}
        for s in scorers:
            pie = PIERetriever.from_demonstrations(pool, models.task, content_scorer=models.scorer(s))
            for w in sorted({0.0, *weights}):
                hits = pie.retrieve_batch(texts, k, content_weight=w, content_queries=content)
                p = [sum(h.demonstration.metadata.get("task") == q.metadata["task"] for h in hs) / k for hs, q in zip(hits, queries)]
                rows[_cond(s, w)] = round(sum(p) / len(p), 4)
        out[name] = {"n_queries": len(queries), "p@k": rows}
    return out


def run_icl_v2(cfg: ICLv2Config, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Dev sweep, choice of (scorer, content_weight), test table. Returns the JSON-serialisable results."""
    from pie_retriever.evaluation.bench.backends import make_backend

    started = time.perf_counter()
    data: dict[str, Any] = {}
    for name in cfg.sets:
        pool, queries, short = load_icl_set(name)
        dev, test = split_queries(queries, cfg.seed)
        data[name] = (pool, {"dev": _limit(dev, cfg.limit), "test": _limit(test, cfg.limit)}, short)
    models = _Models(cfg.task_model)
    options: dict[str, Any] = {"dtype": cfg.dtype}
    if cfg.backend == "transformers":
        options["batch_size"] = cfg.batch_size
    t0 = time.perf_counter()
    backend = make_backend(cfg.backend, cfg.model, **options)
    load_s = time.perf_counter() - t0
    log(f"icl v2: {cfg.backend}:{cfg.model} ({cfg.dtype}) loaded in {load_s:.0f} s; task model {models.task_name}")
    dev_pairs = [(s, 0.0) for s in cfg.scorers[:1]] + [(s, w) for s in cfg.scorers for w in cfg.weights if w > 0]
    t0 = time.perf_counter()
    dev = _run_split(cfg, data, "dev", backend, models, dev_pairs, cfg.scorers)
    dev["wall_s"] = round(time.perf_counter() - t0, 1)
    scorer, weight = choose_weight(dev["pooled"], cfg.scorers, cfg.weights)
    log(f"icl v2: dev done in {dev['wall_s']:.0f} s; chosen content scorer {scorer}, content_weight {weight:g}")
    test_pairs = list(dict.fromkeys([(scorer, 0.0), (scorer, weight), (scorer, 1.0)]))
    t0 = time.perf_counter()
    test = _run_split(cfg, data, "test", backend, models, test_pairs, [scorer])
    test["wall_s"] = round(time.perf_counter() - t0, 1)
    for split in (dev, test):
        _compact(split)
    match = task_match(data, models, cfg.scorers, cfg.weights, cfg.k)
    return {
        "name": "icl_v2", "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "llm": {"backend": cfg.backend, "model": cfg.model, "dtype": cfg.dtype, "path": getattr(backend, "path", None),
                "load_s": round(load_s, 1)},
        "task_model": models.task_name,
        "sizes": {name: {"pool": len(pool), "dev": len(s["dev"]), "test": len(s["test"]),
                         "tasks": len({q.metadata["task"] for q in s["dev"] + s["test"]})} for name, (pool, s, _) in data.items()},
        "chosen": {"scorer": scorer, "content_weight": weight, "condition": _cond(scorer, weight),
                   "rule": "best pooled dev score over (scorer, weight); ties: lower weight, then cheaper scorer"},
        "dev": dev, "test": test, "task_match": match,
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "wall_s": round(time.perf_counter() - started, 1),
    }


# -- tables --------------------------------------------------------------------------------------------
ROW_LABELS = {"none": "no demonstrations", "random": "random", "bm25": "BM25", "minilm": "plain MiniLM",
              "pie": "PIE task-only (content_weight 0)", "oracle": "oracle: same task, random"}


def _label(cond: str, chosen: str) -> str:
    if cond in ROW_LABELS:
        return ROW_LABELS[cond]
    if cond.startswith("oracle+"):
        return f"oracle: same task, best content ({cond.split('+', 1)[1]})"
    scorer, _, weight = cond[len("pie+"):].partition("@")
    tag = " **(chosen)**" if cond == chosen else ""
    return f"PIE task + content ({scorer}, content_weight {weight}){tag}"


def _interval(d: dict[str, float] | None) -> str:
    return "–" if not d else f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def format_tables(results: dict[str, Any]) -> str:
    """Markdown: the test and dev tables (pooled, per set) and the task-match table."""
    chosen = results["chosen"]["condition"]
    lines: list[str] = []
    for split in ("test", "dev"):
        block = results[split]
        sets = list(block["sets"])
        head = "| condition | score | " + " | ".join(f"{s} score" for s in sets) + " | task match | − PIE task-only [95% CI] | − oracle random [95% CI] |"
        lines += [f"**{split} split** ({block['pooled']['pie']['n']} queries)", "", head, "|---|" + "---:|" * (len(sets) + 4)]
        for cond, row in block["pooled"].items():
            per_set = " | ".join(_fmt(block["sets"][s]["conditions"][cond]["score"]) for s in sets)
            lines.append(f"| {_label(cond, chosen)} | {_fmt(row['score'])} | {per_set} | {_fmt(row['task_match'])} | "
                         f"{_interval(row.get('minus_pie'))} | {_interval(row.get('minus_oracle'))} |")
        lines.append("")
    lines += ["**task-match P@4** (every query of the set, both splits)", ""]
    sets = list(results["task_match"])
    lines += ["| retriever | " + " | ".join(sets) + " |", "|---|" + "---:|" * len(sets)]
    for cond in results["task_match"][sets[0]]["p@k"]:
        lines.append(f"| {_label(cond, chosen)} | " + " | ".join(_fmt(results["task_match"][s]["p@k"][cond]) for s in sets) + " |")
    return "\n".join(lines) + "\n"
