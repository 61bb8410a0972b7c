"""Train on your own labelled pool: split by label, measure task match before and after, plot the loss.

:func:`train_on_pool` is what ``pie-retriever train --pool FILE`` runs::

    from pie_retriever import load_bundled_pool, load_bundled_queries
    from pie_retriever.training.pool import train_on_pool

    result = train_on_pool(load_bundled_pool(), "runs/my-pool", eval_queries=load_bundled_queries(),
                           overrides={"epochs": 2})
    print(result.base["p@4"], "->", result.tuned["p@4"])

Task match is measured the way a pool is used: the training part of the pool is indexed and each held-out
instruction retrieves from it; P@k is the share of the k nearest with the query's label (no LLM involved).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pie_retriever._util import DEFAULT_K, atomic_write_text
from pie_retriever.errors import TrainingDataError
from pie_retriever.training.args import TrainingArguments
from pie_retriever.training.data import LabelledSet, labelled_set_from_pool, split_by_label

logger = logging.getLogger(__name__)

__all__ = ["POOL_DEFAULTS", "PoolTrainResult", "moving_average", "plot_losses", "task_match", "train_on_pool"]

#: Overrides of the ``default`` recipe for a small pool (hundreds to a few thousand instructions): epochs
#: instead of 320 fixed steps, smaller batches. ``--set``/``overrides`` win over these.
POOL_DEFAULTS: dict[str, Any] = {"max_steps": None, "epochs": 8, "batch_size": 32, "max_anchors_per_label": 32}

REPORT_FILE = "pool_eval.json"
LOSS_PNG = "loss_curve.png"


@dataclass
class PoolTrainResult:
    """What :func:`train_on_pool` did: the artifact, the data, and task match before and after."""

    output_dir: Path
    base: dict[str, float]
    tuned: dict[str, float]
    data_report: dict[str, Any]
    steps: int
    seconds: dict[str, float]
    losses: list[float] = field(default_factory=list)
    loss_png: Path | None = None
    #: the same evaluation with the library's shipped default model (the one a user gets without training)
    default: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output_dir"] = str(self.output_dir)
        out["loss_png"] = str(self.loss_png) if self.loss_png else None
        return out


def task_match(model: Any, pool: LabelledSet, queries: LabelledSet | None = None, *, k: int = DEFAULT_K) -> dict[str, float]:
    """P@1, P@k and MRR@10 of ``queries`` retrieving from ``pool`` (labels compared exactly).

    ``queries=None`` is leave-one-out: every instruction of ``pool`` queries the others. ``model`` is a model spec
    or an :class:`~pie_retriever.encoders.base.Encoder`.
    """
    import numpy as np

    from pie_retriever.retrieval.retriever import PIERetriever
    from pie_retriever.types import Demonstration

    demos = [Demonstration(t, id=f"p{i}", metadata={"task": lab}) for i, (t, lab) in enumerate(zip(pool.texts, pool.labels))]
    retriever = PIERetriever.from_demonstrations(demos, model)
    loo = queries is None
    queries = pool if loo else queries
    depth = min(max(k, 10), len(pool) - loo)
    hits = retriever.retrieve_batch(queries.texts, k=depth + loo)
    if loo:  # drop each query's own entry
        hits = [[h for h in row if h.demonstration.id != f"p{i}"][:depth] for i, row in enumerate(hits)]
    rel = np.array([[h.demonstration.metadata["task"] == lab for h in row] + [False] * (depth - len(row))
                    for row, lab in zip(hits, queries.labels)])
    first = np.where(rel.any(1), rel.argmax(1) + 1, np.inf)
    return {"p@1": round(float(rel[:, 0].mean()), 4), f"p@{k}": round(float(rel[:, :k].mean()), 4),
            "mrr@10": round(float(np.mean(1.0 / first)), 4), "queries": len(queries), "pool": len(pool) - loo}


def moving_average(values: Sequence[float], beta: float = 0.9) -> list[float]:
    """Exponential moving average with Adam's bias correction: ``m_t = beta·m_(t-1) + (1-beta)·v_t`` from
    ``m_0 = 0``, reported as ``m_t / (1 - beta^t)``, so the first steps' large losses do not hold the curve up."""
    out, m = [], 0.0
    for t, v in enumerate(values, start=1):
        m = beta * m + (1.0 - beta) * float(v)
        out.append(m / (1.0 - beta**t))
    return out


def plot_losses(losses: Sequence[float], path: str | Path, *, title: str = "training loss") -> Path:
    """Write a PNG of the per-step loss and its moving average (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="#9bb7d4", linewidth=1, label="loss per step")
    ax.plot(steps, moving_average(losses), color="#1f4e79", linewidth=2, label="moving average (0.9, bias-corrected)")
    ax.set(xlabel="step", ylabel="InfoNCE loss", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _as_labelled(queries: Any, label_field: str) -> LabelledSet:
    if isinstance(queries, LabelledSet):
        return queries
    out = LabelledSet()
    for q in queries:
        lab = q.metadata.get(label_field)
        if lab:
            out.extend([q.instruction], [str(lab)], "queries")
    if not out:
        msg = f"The evaluation queries have no label in metadata[{label_field!r}]."
        raise TrainingDataError(msg)
    return out


def _split(demos: Sequence[Any], label_field: str, auto_label: bool, eval_split: float, eval_queries: Any,
           seed: int, progress: bool | None, split_by: str) -> tuple[LabelledSet, LabelledSet | None, dict[str, Any]]:
    data, report = labelled_set_from_pool(demos, label_field=label_field, auto_label=auto_label, show_progress=progress)
    if eval_queries is not None:
        queries = _as_labelled(eval_queries, label_field)
        report.update(eval="queries", eval_instructions=len(queries), eval_labels=len(set(queries.labels)))
        return data, queries, report
    train, held, split = split_by_label(data, eval_split, seed=seed, by=split_by)
    report.update(eval="split", **split)
    return train, (held if len(held) else None), report


def train_on_pool(
    demos: Sequence[Any],
    output_dir: str | Path,
    *,
    label_field: str = "task",
    auto_label: bool = False,
    eval_split: float = 0.2,
    split_by: str = "instance",
    eval_queries: Sequence[Any] | LabelledSet | None = None,
    args: TrainingArguments | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> PoolTrainResult:
    """Tune an instruction encoder on ``demos`` (their ``metadata[label_field]`` labels) and save an artifact.

    Evaluation: ``eval_queries`` (labelled demonstrations) retrieve from the whole pool, or else ``eval_split``
    of each label is held out and retrieves from the rest (``split_by="instance"``), or ``eval_split`` of the labels
    is held out and evaluated leave-one-out among themselves (``split_by="label"``); 0 = no evaluation. ``args`` defaults to the
    ``default`` recipe with :data:`POOL_DEFAULTS` and ``overrides``. Writes the artifact, ``pool_eval.json``
    (this result) and ``loss_curve.png`` into ``output_dir``.
    """
    from pie_retriever.training.trainer import train

    if args is None:
        args = TrainingArguments.from_recipe("default", **{**POOL_DEFAULTS, **dict(overrides or {})})
    t0 = time.perf_counter()
    train_set, queries, report = _split(demos, label_field, auto_label, eval_split, eval_queries, args.seed, progress, split_by)
    # held-out labels are evaluated leave-one-out among themselves; held-out instructions query the training part
    pool, queries = (queries, None) if split_by == "label" and eval_queries is None and queries is not None else (train_set, queries)
    evaluate = queries is not None or pool is not train_set
    base = task_match(_base_encoder(args), pool, queries) if evaluate else {}
    t_base = time.perf_counter() - t0
    result = train(args, output_dir, data=train_set, data_report=report, progress=progress)
    t1 = time.perf_counter()
    tuned = task_match(str(result.output_dir), pool, queries) if evaluate else {}
    default = _default_match(args, pool, queries) if evaluate else {}
    seconds = {"data_and_base_eval": round(t_base, 1), "train": round(result.seconds, 1),
               "tuned_eval": round(time.perf_counter() - t1, 1), "total": round(time.perf_counter() - t0, 1)}
    out = PoolTrainResult(output_dir=Path(result.output_dir), base=base, tuned=tuned, data_report=result.data_report,
                          steps=result.steps, seconds=seconds, losses=result.losses, default=default)
    out.loss_png = _plot_quietly(result.losses, out.output_dir / LOSS_PNG)
    atomic_write_text(out.output_dir / REPORT_FILE, json.dumps({**out.to_dict(), "training": args.to_dict()}, indent=2))
    return out


def _default_match(args: TrainingArguments, pool: LabelledSet, queries: LabelledSet | None) -> dict[str, Any]:
    """Task match of the shipped default model on the same queries (what training has to beat), with its name."""
    from pie_retriever.encoders.models import DEFAULT_MODEL

    if args.base_model == DEFAULT_MODEL:
        return {}
    return {"model": DEFAULT_MODEL, **task_match(DEFAULT_MODEL, pool, queries)}


def _base_encoder(args: TrainingArguments) -> Any:
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(args.base_model, prompt=args.prompt, pooling=args.pooling)


def _plot_quietly(losses: Sequence[float], path: Path) -> Path | None:
    try:
        return plot_losses(losses, path)
    except ImportError:
        logger.warning("matplotlib is not installed, so no %s was drawn; pip install 'pie-retriever[train]'", path.name)
        return None
