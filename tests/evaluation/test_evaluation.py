from __future__ import annotations

import json

import numpy as np
import pytest

from pie_retriever.evaluation import metrics as M
from pie_retriever.evaluation.rankers import BM25Ranker, EmbeddingRanker, TfidfRanker, top_k


# -- metrics --------------------------------------------------------------------------------------------
def test_relevance_and_precision():
    rel = M.relevance(["a", "b"], [["a", "b", "a"], ["a", "a", "a"]])
    assert rel.dtype == bool and rel.shape == (2, 3)
    assert rel.tolist() == [[True, False, True], [False, False, False]]
    assert M.precision_at_k(rel, 1) == pytest.approx(0.5)
    assert M.precision_at_k(rel, 3) == pytest.approx((2 / 3) / 2)


def test_relevance_shape_mismatch():
    with pytest.raises(ValueError, match="must match"):
        M.relevance(["a"], [["a"], ["b"]])


def test_precision_k_too_large():
    with pytest.raises(ValueError, match="larger than"):
        M.precision_at_k(np.ones((2, 3), bool), 4)
    with pytest.raises(ValueError, match="positive integer"):
        M.precision_at_k(np.ones((2, 3), bool), 0)


def test_mrr():
    rel = np.array([[False, True, False], [True, False, False], [False, False, False]])
    assert M.mrr(rel) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_ndcg_binary_and_n_relevant():
    rel = np.array([[True, False, True]])
    dcg = 1 + 1 / np.log2(4)
    assert M.ndcg_at_k(rel, 3) == pytest.approx(dcg / (1 + 1 / np.log2(3)))
    # three relevant items exist but only two were retrieved
    assert M.ndcg_at_k(rel, 3, n_relevant=[3]) == pytest.approx(dcg / (1 + 1 / np.log2(3) + 1 / np.log2(4)))
    assert M.ndcg_at_k(np.array([[False, False]]), 2) == 0.0
    assert M.ndcg_at_k(np.array([[True, True]]), 2) == pytest.approx(1.0)


def test_clustering_scores_perfect_and_keys():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 10
    labels = [i % 3 for i in range(30)]
    x = centers[labels] + rng.normal(scale=0.01, size=(30, 8))
    out = M.clustering_scores(x, labels, seed=0)
    assert set(out) == {"ari", "purity", "homogeneity"}
    assert out["ari"] == pytest.approx(1.0) and out["purity"] == pytest.approx(1.0)


def test_purity_majority():
    assert M.purity_score([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.75)


def test_spearman():
    assert M.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equal length"):
        M.spearman([1, 2], [1, 2, 3])


# -- rankers --------------------------------------------------------------------------------------------
def test_top_k_ties_and_self_exclusion():
    s = np.array([[1.0, 1.0, 0.5], [0.2, 0.9, 0.9]])
    assert top_k(s, 2).tolist() == [[0, 1], [1, 2]]
    assert top_k(s, 2, exclude_self_offset=0).tolist() == [[1, 2], [2, 0]]


POOL = [
    "Write a poem about the ocean.",
    "Compose a poem about autumn leaves.",
    "Translate this sentence into French.",
    "Translate the following text into German.",
    "Summarize the article in two sentences.",
    "Summarize this news article briefly.",
]


@pytest.mark.parametrize("ranker", [BM25Ranker(), TfidfRanker()], ids=["bm25", "tfidf"])
def test_lexical_rankers_loo(ranker):
    idx = ranker.rank(POOL, None, 1, loo=True)
    assert idx.shape == (6, 1)
    assert all(idx[i, 0] != i for i in range(6))
    assert idx[:, 0].tolist() == [1, 0, 3, 2, 5, 4]


def test_lexical_ranker_queries():
    idx = BM25Ranker().rank(POOL, ["translate to Spanish", "xyzzy"], 2)
    assert idx.shape == (2, 2) and idx[0, 0] in (2, 3)


def test_ranker_input_errors():
    with pytest.raises(ValueError, match="exceeds"):
        TfidfRanker().rank(POOL, None, 6, loo=True)
    with pytest.raises(ValueError, match="loo=True"):
        TfidfRanker().rank(POOL, None, 2)
    with pytest.raises(TypeError, match="single string"):
        TfidfRanker().rank("abc", ["x"], 1)


def test_embedding_ranker_with_fake(fake_encoder):
    ranker = EmbeddingRanker(fake_encoder)
    idx = ranker.rank(POOL, None, 2, loo=True)
    assert idx.shape == (6, 2)
    assert all(i not in row for i, row in enumerate(idx.tolist()))
    q = ranker.rank(POOL, [POOL[3]], 1)
    assert q[0, 0] == 3  # identical text ranks first
    v = ranker.embed(POOL)
    assert v.shape == (6, fake_encoder.dim) and v.dtype == np.float32


# -- IEB loaders and protocols (tiny files) -------------------------------------------------------------
@pytest.fixture
def tiny_ieb(tmp_path):
    eft = {
        "write|poem": {"number": 3, "samples": [{"category": ["write", "poem"], "instruction": t} for t in POOL[:2] + ["Write a poem about rain."]]},
        "translate|sentence": {"number": 2, "samples": [{"category": ["translate", "sentence"], "instruction": t} for t in POOL[2:4]]},
        "summarize|article": {"number": 2, "samples": [{"category": ["summarize", "article"], "instruction": t} for t in POOL[4:]]},
    }
    iis = [
        {"instruction1": POOL[0], "intention1": "write|poem", "instruction2": POOL[1], "intention2": "write|poem", "label": 1},
        {"instruction1": POOL[0], "intention1": "write|poem", "instruction2": POOL[2], "intention2": "translate|sentence", "label": 0},
        {"instruction1": POOL[4], "intention1": "summarize|article", "instruction2": POOL[5], "intention2": "summarize|article", "label": 1},
        {"instruction1": POOL[3], "intention1": "translate|sentence", "instruction2": POOL[5], "intention2": "summarize|article", "label": 0},
    ]
    (tmp_path / "eft_test.json").write_text(json.dumps(eft))
    (tmp_path / "intention_similarity_test.json").write_text(json.dumps(iis))
    return tmp_path


def test_load_labelled_and_iis(tiny_ieb):
    from pie_retriever.pool.ieb import held_out_instructions, load_iis, load_labelled

    x, y = load_labelled(tiny_ieb / "eft_test.json")
    assert len(x) == 7 and y.count("write|poem") == 3
    first, second, labels = load_iis(tiny_ieb / "intention_similarity_test.json")
    assert len(first) == 4 and labels.tolist() == [1, 0, 1, 0]
    assert POOL[0] in held_out_instructions(tiny_ieb)


def test_load_labelled_rejects_wrong_shape(tmp_path):
    from pie_retriever.errors import PoolFormatError
    from pie_retriever.pool.ieb import load_labelled

    p = tmp_path / "x.json"
    p.write_text("[1, 2]")
    with pytest.raises(PoolFormatError, match="expected an IEB object"):
        load_labelled(p)


def test_evaluate_protocols(tiny_ieb, fake_encoder):
    from pie_retriever.evaluation.ieb import evaluate

    res = evaluate(TfidfRanker(), tiny_ieb, name="tfidf", k=5)
    for key in ("p@1", "p@4", "mrr", "ndcg@10", "ari", "purity", "homogeneity", "iis_spearman"):
        assert res[key] is not None
    assert res["n_instructions"] == 7 and res["n_labels"] == 3
    bm = evaluate(BM25Ranker(), tiny_ieb, k=5)
    assert bm["ari"] is None and bm["iis_spearman"] is None and bm["p@1"] > 0.5
    emb = evaluate(EmbeddingRanker(fake_encoder), tiny_ieb, k=5)
    assert 0.0 <= emb["p@1"] <= 1.0 and emb["ari"] is not None


def test_iis_scores_auc_and_ceiling():
    import math

    from pie_retriever.evaluation.ieb import intention_similarity, intention_similarity_scores
    from pie_retriever.pool.ieb import IISPairs

    # 3 positive pairs (same text twice → cosine 1) and 2 negative pairs (orthogonal one-hot vectors)
    vocab = {t: np.eye(8, dtype=np.float32)[i] for i, t in enumerate("abcdefgh")}
    pairs = IISPairs(first=["a", "b", "c", "d", "e"], second=["a", "b", "c", "f", "g"],
                     labels=np.array([1, 1, 1, 0, 0]), intentions1=[""] * 5, intentions2=[""] * 5)
    embed = lambda texts: np.stack([vocab[t] for t in texts])
    s = intention_similarity_scores(embed, pairs)
    assert s["iis_auc"] == 1.0
    assert s["iis_spearman"] == pytest.approx(1.0)  # tied scores within each class reach 1
    assert s["iis_spearman"] == pytest.approx(intention_similarity(embed, pairs))
    # untied perfect separation against a 0/1 label: ρ = √(3pq) · √(n²/(n²−1)) (here 0.866), → √(3pq) for large n
    assert s["iis_spearman_max"] == pytest.approx(math.sqrt(3 * 0.4 * 0.6) * math.sqrt(25 / 24), abs=1e-9)
    assert s["iis_spearman_max"] < 1.0


def test_eval_cli(tiny_ieb, tmp_path, capsys):
    from pie_retriever.cli import main

    out = tmp_path / "res.json"
    assert main(["eval", "ieb", "--data", str(tiny_ieb), "--bm25", "--tfidf", "--output", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert [r["name"] for r in payload["results"]] == ["BM25", "TF-IDF"]
    table = capsys.readouterr().out
    assert "| BM25 |" in table and "P@4" in table
    # merge keeps earlier methods
    assert main(["eval", "ieb", "--data", str(tiny_ieb), "--bm25", "--output", str(out), "--merge"]) == 0
    assert [r["name"] for r in json.loads(out.read_text())["results"]] == ["TF-IDF", "BM25"]


def test_eval_cli_errors(tmp_path, capsys):
    from pie_retriever.cli import main
    from pie_retriever.evaluation.cli import parse_model

    assert main(["eval", "ieb", "--data", str(tmp_path), "--bm25"]) == 1
    assert "not found" in capsys.readouterr().err
    assert parse_model("smollm2@pooling=last,name=x") == ("smollm2", {"pooling": "last", "name": "x"})
    assert parse_model("minilm@name=MiniLM (plain, mean),batch_size=8") == ("minilm", {"name": "MiniLM (plain, mean)", "batch_size": 8})
    with pytest.raises(ValueError, match="Bad model option"):
        parse_model("minilm@colour=red")


@pytest.mark.slow
def test_ieb_eft_bm25_matches_design(ieb):
    """BM25 leave-one-out P@4 on the full eft_test is 0.750 (DESIGN.md)."""
    from pie_retriever.evaluation.ieb import task_retrieval
    from pie_retriever.pool.ieb import load_labelled

    x, y = load_labelled(ieb / "eft_test.json")
    assert len(x) == 3291
    res = task_retrieval(BM25Ranker(), x, y)
    assert res["p@4"] == pytest.approx(0.750, abs=0.002)
