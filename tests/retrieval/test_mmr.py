"""MMR keeps the task (issue 29 item 2): diversity inside the task band, ``--mmr-lambda`` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.cli import main
from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries
from pie_retriever.retrieval.mmr import TASK_BAND, mmr_order


@pytest.fixture(scope="module")
def bundled():
    from pie_retriever.encoders.transformer import TransformerEncoder

    return PIERetriever.from_demonstrations(load_bundled_pool(), TransformerEncoder())  # the default model


def _p_at_4(results, queries) -> float:
    return float(np.mean([[h.demonstration.metadata["task"] == q.metadata["task"] for h in hits] for hits, q in zip(results, queries)]))


def test_mmr_keeps_task_match_on_bundled_queries(bundled):
    queries = load_bundled_queries()
    texts = [q.instruction for q in queries]
    plain = _p_at_4(bundled.retrieve_batch(texts, k=4), queries)
    diverse = bundled.retrieve_batch(texts, k=4, mmr=True)
    assert _p_at_4(diverse, queries) >= plain - 0.02
    assert [[h.rank for h in hits] for hits in diverse] == [[0, 1, 2, 3]] * len(queries)
    changed = sum([h.id for h in a] != [h.id for h in b] for a, b in zip(diverse, bundled.retrieve_batch(texts, k=4)))
    assert changed > 0  # MMR still re-orders within the task


def test_band_excludes_other_tasks_classic_does_not():
    # Two near-identical same-task candidates, one other-task candidate far below the band.
    v = np.array([[1.0, 0.0, 0.0], [0.999, 0.0447, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scores = np.array([0.9, 0.88, 0.5], dtype=np.float32)
    assert mmr_order(v, scores, 2, 0.5, band=None) == [0, 2]  # classic MMR jumps to the other task
    assert mmr_order(v, scores, 2, 0.5) == [0, 1]  # the band keeps it out
    assert mmr_order(v, scores, 3, 0.5) == [0, 1, 2]  # a band smaller than k is filled in relevance order
    assert TASK_BAND > 0


def test_lambda_reorders_inside_band():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 8)).astype(np.float32)
    v[1] = v[0] + 0.01  # a near duplicate of the best
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scores = np.array([0.90, 0.89, 0.88, 0.87, 0.86, 0.85], dtype=np.float32)
    assert mmr_order(v, scores, 3, 1.0) == [0, 1, 2]
    assert 1 not in mmr_order(v, scores, 3, 0.3)  # the duplicate is skipped for diversity


def test_cli_mmr_lambda(bundled, tmp_path, capsys):
    idx = tmp_path / "idx"
    bundled.save(idx)
    query = "Convert 5 miles to kilometres"
    assert main(["search", str(idx), query, "-k", "3", "--mmr-lambda", "0.3", "--json", "--threads", "1"]) == 0
    got = [h["id"] for h in json.loads(capsys.readouterr().out)]
    assert got == [h.id for h in bundled.retrieve(query, k=3, mmr=True, mmr_lambda=0.3)]
    assert main(["search", str(idx), query, "-k", "3", "--mmr", "--json", "--threads", "1"]) == 0
    hits = json.loads(capsys.readouterr().out)
    task = bundled.retrieve(query, k=1)[0].demonstration.metadata["task"]
    assert [h["metadata"]["task"] for h in hits] == [task] * 3  # docs/cli.md's --mmr example: 3 of 3 of the task
    assert main(["search", str(idx), query, "--mmr-lambda", "1.5"]) == 1
    assert "--mmr-lambda must be in [0, 1]" in capsys.readouterr().err
