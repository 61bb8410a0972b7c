"""The paper's IEB (Instruction Embedding Benchmark) protocols; the files are read by :mod:`pie_retriever.pool.ieb`.

Protocols (:func:`evaluate`):

* **task retrieval** — leave-one-out over every eft_test sample (one row per sample, 3,291): P@1, P@4,
  MRR@10 and nDCG@10 of the same-label neighbours;
* **ICT** — KMeans (``n_clusters`` = number of gold labels, ``random_state=0``, ``n_init="auto"``) on
  the embeddings of every eft_test sample: ARI, purity, homogeneity;
* **IIS** — cosine similarity of each pair of the intention-similarity file, Spearman with the 0/1 label.

The IEB folder is never guessed: :func:`resolve_ieb_dir` takes ``--data`` or ``$PIE_IEB_DIR``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pie_retriever.errors import EvalArgumentError
from pie_retriever.pool.ieb import EFT_TEST, IFT_TEST, IIS_TEST, IISPairs, load_iis, load_labelled

__all__ = [
    "IEB_ENV",
    "RANK_DEPTH",
    "evaluate",
    "intention_similarity",
    "intention_similarity_scores",
    "resolve_ieb_dir",
    "task_retrieval",
]

#: Environment variable naming the IEB folder when ``--data`` is not given.
IEB_ENV = "PIE_IEB_DIR"


def resolve_ieb_dir(data: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """The IEB folder from ``data`` (``--data``), else ``$PIE_IEB_DIR``.

    A folder that is named but does not exist is an error; with neither set, ``required=True`` is an error and
    ``required=False`` returns None (callers then skip the IEB parts and say why).
    """
    source = "--data" if data else f"${IEB_ENV}"
    value = data or os.environ.get(IEB_ENV)
    if not value:
        if not required:
            return None
        msg = f"No IEB folder: pass --data DIR (the folder holding {EFT_TEST}, {IFT_TEST}, ...) or set {IEB_ENV}."
        raise EvalArgumentError(msg)
    path = Path(value).expanduser()
    if not path.is_dir():
        msg = f"IEB folder {str(path)!r} (from {source}) does not exist; pass --data DIR or set {IEB_ENV} to the folder holding {EFT_TEST}."
        raise EvalArgumentError(msg)
    return path


# --------------------------------------------------------------------------------------------------
# protocols

#: Default depth of the leave-one-out ranking (MRR and nDCG are computed within it).
RANK_DEPTH = 10


def _unique(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    index: dict[str, int] = {}
    pos = np.asarray([index.setdefault(t, len(index)) for t in texts], dtype=np.int64)
    return list(index), pos


def task_retrieval(ranker: Any, instructions: Sequence[str], labels: Sequence[str], *, k: int = RANK_DEPTH,
                   vectors: np.ndarray | None = None) -> dict[str, float]:
    """Leave-one-out task retrieval: every instruction queries all the others; relevant = same label.

    Returns ``p@1``, ``p@4``, ``mrr`` (within the top ``k``) and ``ndcg@10`` (ideal from the label's size).
    When ``vectors`` (document embeddings of ``instructions``) are given they are ranked directly.
    """
    from pie_retriever.evaluation.metrics import mrr, ndcg_at_k, precision_at_k, relevance

    k = min(k, len(instructions) - 1)  # tiny sets: rank every other instruction
    if k < 1:
        msg = "task retrieval needs at least two instructions."
        raise EvalArgumentError(msg)
    if vectors is not None:
        from pie_retriever.evaluation.rankers import rank_by_vectors

        idx = rank_by_vectors(vectors, vectors, k, loo=True)
    else:
        idx = ranker.rank(list(instructions), None, k, loo=True)
    lab = np.asarray(list(labels), dtype=object)
    rel = relevance(lab, lab[idx])
    counts: dict[str, int] = {}
    for x in lab:
        counts[x] = counts.get(x, 0) + 1
    n_rel = np.asarray([counts[x] - 1 for x in lab])
    return {
        "p@1": precision_at_k(rel, 1), "p@4": precision_at_k(rel, min(4, k)), "mrr": mrr(rel),
        "ndcg@10": ndcg_at_k(rel, min(10, k), n_relevant=n_rel),
    }


def _pair_cosines(embed: Any, pairs: IISPairs) -> np.ndarray:
    texts, pos = _unique([*pairs.first, *pairs.second])
    v = np.asarray(embed(texts), dtype=np.float32)
    n = len(pairs)
    a, b = v[pos[:n]], v[pos[n:]]
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = np.where(na * nb > 0, na * nb, 1.0)
    return (a * b).sum(axis=1) / denom


def intention_similarity(embed: Any, pairs: IISPairs) -> float:
    """Spearman correlation between the cosine of each pair and its 0/1 label (``embed``: texts → unit vectors)."""
    from pie_retriever.evaluation.metrics import spearman

    return spearman(_pair_cosines(embed, pairs), pairs.labels)


def intention_similarity_scores(embed: Any, pairs: IISPairs) -> dict[str, float]:
    """The IIS protocol plus two figures that make its Spearman readable.

    - ``iis_spearman``: the paper's figure, Spearman(cosine, 0/1 label).
    - ``iis_auc``: ROC-AUC of the cosine for the same labels (share of positive/negative pairs ranked right).
    - ``iis_spearman_max``: the Spearman a perfect separator with untied scores gets on these labels. With a
      binary label Spearman is capped by the class balance (√(3·p·(1−p)) for large n), so ρ / this ceiling
      is the comparable number; above it is only reachable through tied scores.
    """
    from sklearn.metrics import roc_auc_score

    from pie_retriever.evaluation.metrics import spearman

    labels = np.asarray(pairs.labels)
    cos = _pair_cosines(embed, pairs)
    perfect = labels * len(labels) + np.arange(len(labels))  # every positive above every negative, no ties
    both = len(set(labels.tolist())) == 2
    return {
        "iis_spearman": spearman(cos, labels),
        "iis_auc": float(roc_auc_score(labels, cos)) if both else float("nan"),
        "iis_spearman_max": spearman(perfect, labels),
    }


def evaluate(
    ranker: Any,
    data_dir: str | Path,
    *,
    name: str | None = None,
    clustering: bool | None = None,
    similarity: bool | None = None,
    k: int = RANK_DEPTH,
    seed: int = 0,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the IEB protocols for one ranker; returns a flat result dict (``None`` for protocols not run).

    Clustering and similarity need vectors: they run by default for rankers with an ``embed`` method
    (embedding models, TF-IDF) and are skipped for BM25.
    """
    from pie_retriever.evaluation.metrics import clustering_scores
    from pie_retriever.evaluation.rankers import EmbeddingRanker

    data_dir = Path(data_dir)
    instructions, labels = load_labelled(data_dir / EFT_TEST)
    can_embed = hasattr(ranker, "embed")
    clustering = can_embed if clustering is None else clustering
    similarity = can_embed if similarity is None else similarity
    if (clustering or similarity) and not can_embed:
        msg = f"Ranker {type(ranker).__name__} has no embed(); clustering and similarity need vectors."
        raise EvalArgumentError(msg)
    seconds: dict[str, float] = {}
    result: dict[str, Any] = {"name": name or getattr(ranker, "name", type(ranker).__name__), **(info or {})}
    t0 = time.perf_counter()
    vectors = None
    if isinstance(ranker, EmbeddingRanker) and ranker.symmetric:
        unique, pos = _unique(instructions)
        vectors = ranker.embed(unique)[pos]
        seconds["encode_eft"] = time.perf_counter() - t0
    result.update(task_retrieval(ranker, instructions, labels, k=k, vectors=vectors))
    seconds["retrieval"] = time.perf_counter() - t0
    result.update({"ari": None, "purity": None, "homogeneity": None, "iis_spearman": None, "iis_auc": None,
                   "iis_spearman_max": None})
    if clustering:
        t1 = time.perf_counter()
        if vectors is None:
            vectors = np.asarray(ranker.embed(instructions), dtype=np.float32)
        result.update(clustering_scores(vectors, labels, seed=seed))
        seconds["clustering"] = time.perf_counter() - t1
    if similarity:
        t2 = time.perf_counter()
        result.update(intention_similarity_scores(ranker.embed, load_iis(data_dir / IIS_TEST)))
        seconds["similarity"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    result["seconds"] = {key: round(v, 1) for key, v in seconds.items()}
    result["n_instructions"] = len(instructions)
    result["n_labels"] = len(set(labels))
    return result
