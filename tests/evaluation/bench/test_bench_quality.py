"""Benchmark quality section: evaluation sets, ranking metrics, config validation, a lexical run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pie_retriever.evaluation.bench import config, quality
from pie_retriever.evaluation.bench import sets as bench_sets


# -- quality ---------------------------------------------------------------------------------------
def _write_ieb(path: Path, groups: dict[str, list[str]]) -> None:
    data = {lab: {"number": len(xs), "samples": [{"category": lab.split("|"), "instruction": x, "input": x, "output": ""} for x in xs]}
            for lab, xs in groups.items()}
    path.write_text(json.dumps(data))


@pytest.fixture
def tiny_ieb(tmp_path):
    _write_ieb(tmp_path / "eft_test.json", {
        "write|poem": ["Write a poem about cats.", "Compose a poem on dogs.", "Write verses about rain."],
        "summarize|text": ["Summarize the text about cats.", "Summarize this article on dogs.", "Give a summary of the rain report."],
        "translate|sentence": ["Translate the sentence about cats to French.", "Translate this to German: dogs bark.", "Translate: rain falls."],
        "list|example": ["List examples of cats.", "List three dog breeds.", "Name examples of rain gear.", "List rainy cities."],
    })
    _write_ieb(tmp_path / "ift_test.json", {
        "write|poem": ["Write a poem about cats.", "Compose a poem on dogs."],
        "summarize|text": ["Summarize the text about cats.", "Summarize this article on dogs."],
        "list|example": ["List examples of cats."],
        "translate|sentence": ["Translate this to German: dogs bark.", "Translate: rain falls.", "Translate the sentence about cats."],
        **{f"do|thing{i}": [f"Do thing number {i} with the rain."] for i in range(10)},
    })
    return tmp_path


def test_load_sets_protocols(tiny_ieb):
    cfg = config.BenchConfig(ieb_dir=str(tiny_ieb), sets=("ieb-eft", "ieb-ift", "bundled"))
    sets, skipped = bench_sets.load_sets(cfg)
    assert not skipped
    eft, ift, bundled = sets
    assert eft.loo and len(eft.queries[0]) == 13
    assert list(eft.n_relevant()[:3]) == [2, 2, 2]
    # ift: one query per label with exactly two samples; the pool is all of ift_test (self excluded)
    q_texts, q_labels = ift.queries
    assert q_texts == ["Write a poem about cats.", "Summarize the text about cats."]
    assert list(ift.n_relevant()) == [1, 1]
    assert len(bundled.pool_texts) == 249 and len(bundled.query_texts) == 117


def test_missing_ieb_is_skipped_with_a_note(tmp_path):
    sets, skipped = bench_sets.load_sets(config.BenchConfig(ieb_dir=str(tmp_path), sets=("ieb-eft", "bundled")))
    assert [s.key for s in sets] == ["bundled"]
    assert "eft_test.json not found" in skipped[0]


def test_user_pool_needs_labels(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"instruction": f"Write a poem {i}", "kind": "poem" if i % 2 else "other"}) for i in range(6)))
    sets, _ = bench_sets.load_sets(config.BenchConfig(pool=str(pool), label_field="kind", sets=("user",)))
    assert sets[0].key == "user:pool.jsonl" and sets[0].loo and set(sets[0].pool_labels) == {"poem", "other"}
    with pytest.raises(Exception, match="no task label"):
        bench_sets.load_sets(config.BenchConfig(pool=str(pool), sets=("user",)))


def test_evaluate_ranking_known_values():
    es = bench_sets.EvalSet("t", "", ["a1", "a2", "b1", "b2", "b3"], ["a", "a", "b", "b", "b"], loo=True)
    # perfect ranking for every query (self excluded), padded with wrong ones
    ranked = np.array([[1, 2, 3, 4], [0, 2, 3, 4], [3, 4, 0, 1], [2, 4, 0, 1], [2, 3, 0, 1]])
    m, p4 = quality.evaluate_ranking(es, ranked)
    assert m["p@1"] == 1.0 and m["mrr@10"] == 1.0
    assert m["p@4"] == pytest.approx((1 / 4 * 2 + 2 / 4 * 3) / 5)
    assert p4.shape == (5,)


def test_config_validation_lists_choices():
    with pytest.raises(Exception, match="choose from: quality, icl, speed"):
        config.BenchConfig(sections=("qualty",))
    with pytest.raises(Exception, match="Unknown method"):
        config.BenchConfig(methods=("bm26",))
    with pytest.raises(Exception, match="needs --pool"):
        config.BenchConfig(sets=("user",))


def test_run_quality_lexical_on_bundled(tiny_ieb):
    cfg = config.BenchConfig(ieb_dir=str(tiny_ieb), methods=("bm25", "tfidf"), sets=("ieb-eft", "bundled"), show_progress=False)
    sets, _ = bench_sets.load_sets(cfg)
    out = quality.run_quality(cfg, sets)
    r = out["sets"]["bundled"]["results"]
    assert 0.0 < r["bm25"]["p@4"] <= 1.0 and r["bm25"]["n_queries"] == 117
    assert "p@4_minus_bm25" in r["tfidf"] and "p@4_minus_bm25" not in r["bm25"]
