"""Test-set compression and dataset task correlation (synthetic vectors)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs

from pie_retriever.downstream.compare import compare_sets, coverage_score, plot_comparison, wasserstein_score
from pie_retriever.downstream.compress import Compressed, compress_indices, label_distance, weighted_mean
from pie_retriever.errors import ConfigError


@pytest.mark.parametrize("method", ["kmeans", "stratified", "random"])
def test_compress_size_and_weights(clustered, method):
    x, labels = clustered
    small = compress_indices(x, 0.1, method, seed=0)
    assert len(small) == 20 and len(set(small.indices.tolist())) == 20
    assert small.weights.sum() == pytest.approx(len(x))
    if method != "random":  # one item per cluster: every blob is represented
        assert len({labels[i] for i in small.indices}) == 10
        assert label_distance(labels, small) == pytest.approx(0.0, abs=0.05)


def test_weighted_mean_and_label_distance():
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 1.0]])
    small = Compressed(np.array([0, 1]), np.array([3.0, 1.0]))
    assert weighted_mean(scores, small).tolist() == [0.75, 0.25]
    assert weighted_mean(scores[:, 0], small) == pytest.approx(0.75)
    labels = ["a", "a", "b", "b"]
    assert label_distance(labels, Compressed(np.array([0, 2]), np.array([2.0, 2.0]))) == 0.0
    assert label_distance(labels, Compressed(np.array([0, 1]), np.array([2.0, 2.0]))) == 0.5


def test_compress_ratio_errors(clustered):
    x, _ = clustered
    for bad in (0, 1.5, -0.1, "0.1", True):
        with pytest.raises(ConfigError, match="ratio must be a number in"):
            compress_indices(x, bad)
    with pytest.raises(ConfigError, match="Unknown compression method 'cluster'"):
        compress_indices(x, 0.1, "cluster")
    assert len(compress_indices(x, 0.001)) == 1  # at least one item


def test_coverage_score():
    x, _ = blobs(n_clusters=4, per=10)
    assert coverage_score(x[:10], x) == pytest.approx(1.0)  # A inside B: fully covered
    loo = coverage_score(x, x, same=True)
    assert 0.9 < loo < 1.0  # tight blobs: the nearest other member is close but not the row itself
    assert coverage_score(x[:10], x[10:]) < 0.9  # another blob covers it poorly
    assert np.isnan(coverage_score(x[:1], x[:1], same=True))


def test_wasserstein_uses_norms_not_row_sums():
    x, _ = blobs(n_clusters=3, per=10, seed=1)
    y, _ = blobs(n_clusters=3, per=10, seed=2)
    base = wasserstein_score(x, y)
    scaled = x * np.linspace(0.5, 3.0, len(x))[:, None]  # rescaling rows changes nothing after L2 normalisation
    assert wasserstein_score(scaled, y) == pytest.approx(base, rel=1e-5)
    assert wasserstein_score(x, x) == pytest.approx(0.0)
    # dividing by row sums (the paper's code) would give another value: sums can be near zero or negative
    by_sum = x / x.sum(axis=1, keepdims=True)
    assert not np.allclose(np.linalg.norm(by_sum, axis=1), 1.0)


def test_compare_sets_and_plot(tmp_path):
    a, _ = blobs(n_clusters=2, per=15, seed=0)
    b, _ = blobs(n_clusters=2, per=15, seed=1)
    res = compare_sets({"a": a, "b": b, "ab": np.concatenate([a, b])}, max_items=None)
    cov, wd = np.array(res["coverage"]), np.array(res["wasserstein"])
    assert res["names"] == ["a", "b", "ab"] and res["sizes"] == [30, 30, 60]
    assert cov[0, 2] == pytest.approx(1.0) and cov[1, 2] == pytest.approx(1.0)  # the union covers both
    assert cov[2, 0] < 1.0  # a does not cover b's half of the union
    assert np.allclose(np.diag(wd), 0.0) and np.allclose(wd, wd.T)
    plot_comparison(res, tmp_path / "corr.png", title="t")
    assert (tmp_path / "corr.png").stat().st_size > 10000
    sub = compare_sets({"a": a, "b": b}, max_items=10)
    assert sub["compared_items"] == [10, 10] and sub["sizes"] == [30, 30]


def test_compare_errors():
    a, _ = blobs(n_clusters=2, per=5)
    with pytest.raises(ConfigError, match="compare needs at least two sets, got 1"):
        compare_sets({"a": a})
    with pytest.raises(ConfigError, match="same encoder; got dimensions"):
        compare_sets({"a": a, "b": a[:, :8]})
