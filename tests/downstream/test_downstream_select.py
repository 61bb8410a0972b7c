"""Selection methods, the quota and the coverage report (synthetic vectors: fast, exact)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs

from pie_retriever.downstream.coverage import summarize_runs, task_coverage
from pie_retriever.downstream.select import SELECT_METHODS, quota, select_subset, selection_report
from pie_retriever.errors import ConfigError


def test_quota_water_fills():
    assert quota([1, 5, 10], 7).tolist() == [1, 3, 3]
    assert quota([1, 5, 10], 8).tolist() == [1, 3, 4]  # the leftover goes to the biggest task
    assert quota([2, 2], 10).tolist() == [2, 2]  # never more than a task has
    for budget in range(0, 17):
        assert quota([1, 5, 10], budget).sum() == min(budget, 16)


@pytest.mark.parametrize("method", ["kmeans", "kcenter", "task-quota"])
def test_diverse_methods_cover_every_blob(clustered, method):
    x, labels = clustered
    picked = select_subset(x, 10, method, labels=labels, seed=0)
    assert len(picked) == 10 and len(set(picked.tolist())) == 10
    assert np.all(np.diff(picked) > 0)  # sorted row indices
    assert task_coverage(labels, picked)["distinct"] == 10


def test_random_is_seeded_and_worse(clustered):
    x, labels = clustered
    a = select_subset(x, 10, "random", seed=3)
    assert np.array_equal(a, select_subset(x, 10, "random", seed=3))  # exact: integer ids from a seeded generator
    mean_distinct = np.mean([task_coverage(labels, select_subset(x, 10, "random", seed=s))["distinct"] for s in range(20)])
    assert mean_distinct < 9.0


def test_task_quota_budget_below_task_count_picks_spread_tasks():
    x, labels = blobs(n_clusters=8, per=5)
    picked = select_subset(x, 5, "task-quota", labels=labels)
    assert len(picked) == 5 and task_coverage(labels, picked)["distinct"] == 5


def test_kmeans_is_deterministic(clustered):
    x, _ = clustered
    # exact: ids from a seeded faiss k-means on the same array in one process (same threads, same order of sums)
    assert np.array_equal(select_subset(x, 12, "kmeans", seed=1), select_subset(x, 12, "kmeans", seed=1))


def test_errors(clustered):
    x, labels = clustered
    with pytest.raises(ConfigError, match="Unknown selection method 'centroid'; choose one of: kmeans, kcenter"):
        select_subset(x, 5, "centroid")
    with pytest.raises(ConfigError, match=r"budget=500 exceeds the pool size \(200\)"):
        select_subset(x, 500)
    with pytest.raises(ConfigError, match="budget must be a positive integer, got 0"):
        select_subset(x, 0)
    with pytest.raises(ConfigError, match="method 'task-quota' needs one task label per row"):
        select_subset(x, 5, "task-quota")
    assert set(SELECT_METHODS) == {"kmeans", "kcenter", "task-quota", "random"}


def test_task_coverage_numbers():
    labels = ["a"] * 6 + ["b"] * 3 + ["c"] + ["d"]
    cov = task_coverage(labels, [0, 1, 6, 9])  # a, a, b, c
    assert cov["distinct"] == 3 and cov["pool_labels"] == 4 and cov["label_recall"] == 0.75
    assert cov["entropy_bits"] == pytest.approx(1.5)  # {a: .5, b: .25, c: .25}
    assert cov["entropy_norm"] == pytest.approx(1.5 / 2.0)  # log2(min(4 rows, 4 labels))
    assert cov["rare_max_size"] == 1 and cov["rare_labels"] == 2 and cov["rare_kept"] == 0.5  # c kept, d not


def test_summarize_and_report(clustered):
    runs = [{"x": 1.0}, {"x": 3.0}]
    assert summarize_runs(runs) == {"runs": 2, "x": 2.0, "x_sd": pytest.approx(np.sqrt(2))}
    x, labels = clustered
    rep = selection_report(x, labels, 10, "kmeans", seeds=3, baseline_vectors=x[:, ::-1].copy())
    assert rep["selected"]["distinct"] == 10 and rep["baseline"]["distinct"] == 10
    assert rep["random"]["runs"] == 3 and rep["random"]["distinct"] <= 10


def test_kmeans_returns_the_budget_even_with_duplicates():
    x, _ = blobs(n_clusters=3, per=4)
    dup = np.concatenate([np.repeat(x[:1], 40, axis=0), x])  # 40 copies of one vector: clusters can go empty
    for budget in (5, 12, 13):
        picked = select_subset(dup, budget, "kmeans", seed=0)
        assert len(picked) == budget and len(set(picked.tolist())) == budget
