"""The quality section's evaluation sets: IEB eft_test / ift_test, the bundled pool, and a user's labelled pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pie_retriever.errors import ConfigError
from pie_retriever.evaluation.bench.config import SETS, BenchConfig

__all__ = ["EvalSet", "SET_LOADERS", "load_sets", "subsample_loo"]


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

    @property
    def n_texts(self) -> int:
        """Texts an encoder has to embed for this set (the pool, plus the queries unless they are pool rows)."""
        return len(self.pool_texts) + (0 if self.loo else len(self.query_texts or []))

    def n_relevant(self) -> np.ndarray:
        counts: dict[Any, int] = {}
        for lab in self.pool_labels:
            counts[lab] = counts.get(lab, 0) + 1
        _, labels = self.queries
        return np.asarray([counts.get(lab, 0) - (1 if self.loo else 0) for lab in labels], dtype=np.int64)


def subsample_loo(texts: list[str], labels: list[Any], limit: int, seed: int) -> tuple[list[str], list[Any]]:
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


def _ieb_file(ieb: Path | None, name: str, key: str) -> Path | str:
    """The IEB file, or the note saying why the set is skipped."""
    if ieb is None:
        return f"{key}: no IEB folder (pass --data DIR or set PIE_IEB_DIR)"
    path = ieb / name
    if not path.is_file():
        return f"{key}: {path} not found (pass --data DIR or set PIE_IEB_DIR)"
    return path


def _eft_set(cfg: BenchConfig, ieb: Path | None) -> EvalSet | str:
    from pie_retriever.pool.ieb import EFT_TEST, load_labelled

    path = _ieb_file(ieb, EFT_TEST, "ieb-eft")
    if isinstance(path, str):
        return path
    texts, labels = load_labelled(path)
    desc = SETS["ieb-eft"]
    if cfg.eft_limit and len(texts) > cfg.eft_limit:
        texts, labels = subsample_loo(texts, labels, cfg.eft_limit, cfg.seed)
        desc = f"IEB eft_test subset ({len(texts)} samples, {len(set(labels))} tasks, whole tasks, seed {cfg.seed}), leave-one-out"
    return EvalSet("ieb-eft", desc, texts, labels, loo=True)


def _ift_set(cfg: BenchConfig, ieb: Path | None) -> EvalSet | str:
    from pie_retriever.pool.ieb import IFT_TEST, load_labelled

    path = _ieb_file(ieb, IFT_TEST, "ieb-ift")
    if isinstance(path, str):
        return path
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
    return EvalSet("ieb-ift", SETS["ieb-ift"], texts, labels, loo=True, query_rows=np.asarray(rows, dtype=np.int64))


def _bundled_set(cfg: BenchConfig, ieb: Path | None) -> EvalSet:
    from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

    pool, queries = load_bundled_pool(), load_bundled_queries()
    return EvalSet("bundled", SETS["bundled"], [d.instruction for d in pool], [d.metadata.get("task") for d in pool],
                   [q.instruction for q in queries], [q.metadata.get("task") for q in queries])


def _user_set(cfg: BenchConfig, ieb: Path | None) -> EvalSet:
    from pie_retriever.pool.pools import load_pool

    demos = load_pool(cfg.pool, label_field=cfg.label_field)
    missing = sum(d.metadata.get("task") is None for d in demos)
    if missing:
        msg = f"{cfg.pool}: {missing} demonstration(s) have no task label; pass --label-field NAME (a top-level or metadata key)."
        raise ConfigError(msg)
    name = Path(cfg.pool).name
    n_labels = len({d.metadata["task"] for d in demos})
    desc = f"{name} ({len(demos)} demonstrations, {n_labels} labels from {cfg.label_field or 'metadata.task'}), leave-one-out"
    return EvalSet(f"user:{name}", desc, [d.instruction for d in demos], [d.metadata["task"] for d in demos], loo=True)


#: set key → loader ``(cfg, ieb_dir or None) -> EvalSet``, or the note saying why the set is skipped
SET_LOADERS: dict[str, Callable[[BenchConfig, Path | None], EvalSet | str]] = {
    "ieb-eft": _eft_set, "ieb-ift": _ift_set, "bundled": _bundled_set, "user": _user_set,
}


def load_sets(cfg: BenchConfig) -> tuple[list[EvalSet], list[str]]:
    """The evaluation sets asked for (or every available one); returns ``(sets, skipped_notes)``.

    The IEB folder is ``cfg.ieb_dir`` (``--data``), else ``$PIE_IEB_DIR``; a named folder that does not exist
    is an error, no folder at all skips the IEB sets with a note.
    """
    from pie_retriever.evaluation.ieb import resolve_ieb_dir

    wanted = list(cfg.sets) if cfg.sets else (["user"] if cfg.pool else ["ieb-eft", "ieb-ift", "bundled"])
    needs_ieb = any(key in ("ieb-eft", "ieb-ift") for key in wanted)
    ieb = resolve_ieb_dir(cfg.ieb_dir, required=False) if needs_ieb else None
    out: list[EvalSet] = []
    skipped: list[str] = []
    for key in wanted:
        loaded = SET_LOADERS[key](cfg, ieb)
        (skipped if isinstance(loaded, str) else out).append(loaded)
    return out, skipped
