"""Task + content retrieval: the content scorers, content_weight in retrieve/retrieve_batch, save/load, manifest."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import ConfigError, IndexLoadError
from pie_retriever.retrieval.content import (
    DEFAULT_CONTENT_WEIGHT,
    BM25Content,
    DenseContent,
    check_content_weight,
    make_content_scorer,
)

POOL = [
    {"id": "poem-ocean", "instruction": "Write a poem about the ocean and its waves.", "metadata": {"task": "poem"}},
    {"id": "poem-tax", "instruction": "Write a poem about taxes and receipts.", "metadata": {"task": "poem"}},
    {"id": "poem-cat", "instruction": "Write a poem about a lazy cat.", "metadata": {"task": "poem"}},
    {"id": "sum-ocean", "instruction": "Summarize the text.", "input": "The ocean waves are tall.", "metadata": {"task": "sum"}},
    {"id": "sum-tax", "instruction": "Summarize the text.", "input": "Taxes and receipts pile up.", "metadata": {"task": "sum"}},
]


def _pool_retriever(**kwargs):
    return PIERetriever.from_demonstrations(POOL, HashingEncoder(dim=64), **kwargs)


# -- scorers -------------------------------------------------------------------------------------------
def test_bm25_content_matches_bm25s_up_to_scale():
    import bm25s

    texts = [d["instruction"] + ("\n" + d["input"] if d.get("input") else "") for d in POOL]
    scorer = BM25Content()
    scorer.add(list(range(len(texts))), scorer.features(texts))
    query = "a poem about ocean waves"
    ours = scorer.scores(scorer.query_features([query]), 0, np.arange(len(texts)))
    model = bm25s.BM25(k1=1.5, b=0.75)
    model.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    ref = model.get_scores(bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0])
    np.testing.assert_allclose(ours, ref / ref.max(), rtol=1e-5)
    assert ours.max() == pytest.approx(1.0)


def test_bm25_content_incremental_add_remove_equals_rebuild():
    texts = ["red apples and pears", "green apples", "blue ocean waves", "apples apples apples"]
    inc = BM25Content()
    inc.add([0, 1], inc.features(texts[:2]))
    inc.add([2, 3], inc.features(texts[2:]))
    inc.remove([1])
    fresh = BM25Content()
    fresh.add([0, 2, 3], fresh.features([texts[0], texts[2], texts[3]]))
    q = inc.query_features(["apples"])
    labels = np.array([0, 2, 3])
    np.testing.assert_allclose(inc.scores(q, 0, labels), fresh.scores(q, 0, labels))
    assert inc.scores(inc.query_features(["the of and"]), 0, labels).tolist() == [0.0, 0.0, 0.0]  # stopwords only


def test_dense_content_is_cosine_of_the_encoder_and_compacts_after_deletes():
    enc = HashingEncoder(dim=32)
    scorer = DenseContent(enc)
    texts = [f"text number {i} about {w}" for i, w in enumerate(["cats", "dogs", "ocean", "taxes"])]
    scorer.add([10, 11, 12, 13], scorer.features(texts))
    q = scorer.query_features(["about ocean"])
    expected = enc.encode_documents(texts) @ enc.encode_queries(["about ocean"])[0]
    np.testing.assert_allclose(scorer.scores(q, 0, np.array([10, 11, 12, 13])), expected, atol=2e-3)  # fp16 storage
    scorer.remove([10, 11, 12])
    scorer.add([14], scorer.features(["more about cats"]))  # more dead rows than live ones: compacted first
    assert len(scorer._vectors) == 2 and set(scorer._row) == {13, 14}


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_content_weight_is_checked(bad):
    with pytest.raises(ConfigError, match=r"content_weight must be a number in \[0, 1\]"):
        check_content_weight(bad)


def test_unknown_scorer_name_lists_the_choices():
    with pytest.raises(ConfigError, match=r"one of \['minilm', 'bm25'\]"):
        make_content_scorer("tfidf")


# -- retriever -----------------------------------------------------------------------------------------
def test_weight_zero_is_pure_task_match():
    with_scorer = _pool_retriever(content_scorer="bm25")
    without = _pool_retriever(content_scorer=None)
    q = "Write a poem about ocean waves."
    a = [(h.id, h.score) for h in with_scorer.retrieve(q, k=5, content_weight=0.0)]
    b = [(h.id, h.score) for h in without.retrieve(q, k=5)]
    assert a == b
    assert with_scorer.content_weight == DEFAULT_CONTENT_WEIGHT


def test_content_reranks_within_the_task_candidates():
    r = _pool_retriever(content_scorer="bm25")
    q = "Taxes and receipts, please."
    full = r.retrieve(q, k=5, content_weight=1.0, fetch_k=5)
    # content only: the two demonstrations sharing "taxes receipts" come first, whatever their task
    assert {h.id for h in full[:2]} == {"poem-tax", "sum-tax"}
    assert [h.rank for h in full] == list(range(5))
    assert full[0].score == pytest.approx(1.0)
    mixed = r.retrieve(q, k=2, content_weight=0.3)
    scores = [h.score for h in mixed]
    assert scores == sorted(scores, reverse=True)


def test_constructor_default_and_per_call_override():
    r = _pool_retriever(content_scorer="bm25", content_weight=1.0)
    q = "Write a poem about taxes and receipts, please."
    assert r.retrieve(q, k=1, fetch_k=5)[0].id in {"poem-tax", "sum-tax"}
    task_only = _pool_retriever(content_scorer=None).retrieve(q, k=3)
    assert [h.id for h in r.retrieve(q, k=3, content_weight=0.0)] == [h.id for h in task_only]
    batch = r.retrieve_batch([q, "Summarize the text."], k=2, content_weight=0.5)
    assert len(batch) == 2 and all(len(hits) == 2 for hits in batch)


def test_weight_without_scorer_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs a content scorer"):
        _pool_retriever(content_scorer=None, content_weight=0.3)
    r = _pool_retriever(content_scorer=None)
    with pytest.raises(ConfigError, match="content_scorer='bm25' or 'minilm'"):
        r.retrieve("Write a poem.", content_weight=0.2)


def test_min_score_applies_to_the_task_cosine():
    r = _pool_retriever(content_scorer="bm25")
    q = "Write a poem about taxes and receipts, please."
    task = {h.id: h.score for h in r.retrieve(q, k=5, content_weight=0.0)}
    threshold = sorted(task.values())[2]
    hits = r.retrieve(q, k=5, content_weight=0.8, fetch_k=5, min_score=threshold)
    assert {h.id for h in hits} == {i for i, s in task.items() if s >= threshold}


def test_add_and_delete_keep_the_scorer_in_step():
    r = _pool_retriever(content_scorer="bm25")
    q = "Write a poem about taxes and receipts, please."
    r.delete(["poem-tax", "sum-tax"])
    assert {"poem-tax", "sum-tax"}.isdisjoint(h.id for h in r.retrieve(q, k=3, content_weight=1.0))
    r.add([{"id": "poem-tax-2", "instruction": "Write a poem about taxes and receipts.", "metadata": {"task": "poem"}}])
    assert r.retrieve(q, k=1, content_weight=1.0, fetch_k=10)[0].id == "poem-tax-2"


def test_concurrent_content_retrievals_while_adding():
    r = _pool_retriever(content_scorer="bm25")
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(30):
                hits = r.retrieve("Write a poem about taxes.", k=3, content_weight=0.5)
                assert len(hits) == 3 and all(h.demonstration.id in r for h in hits)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(20):
        r.add([{"id": f"extra-{i}", "instruction": f"Write a poem about item {i}.", "metadata": {"task": "poem"}}])
    for t in threads:
        t.join()
    assert not errors


# -- persistence ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scorer", ["bm25", "minilm-fake"])
def test_save_load_keeps_weight_and_scorer(tmp_path, scorer):
    spec = DenseContent(HashingEncoder(dim=32)) if scorer == "minilm-fake" else scorer
    r = _pool_retriever(content_scorer=spec, content_weight=0.4)
    path = r.save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["content"]["weight"] == 0.4
    assert manifest["content"]["scorer"] == ("minilm" if scorer == "minilm-fake" else "bm25")
    if scorer == "minilm-fake":
        assert {"content_vectors.npy", "content_labels.npy"} <= set(manifest["files"])
    loaded = PIERetriever.load(path)
    assert loaded.content_weight == 0.4 and loaded.content.kind == manifest["content"]["scorer"]
    q = "Write a poem about taxes and receipts, please."
    assert [(h.id, round(h.score, 4)) for h in loaded.retrieve(q, k=4)] == [(h.id, round(h.score, 4)) for h in r.retrieve(q, k=4)]


def test_index_without_scorer_saves_and_loads(tmp_path):
    r = _pool_retriever(content_scorer=None)
    loaded = PIERetriever.load(r.save(tmp_path / "idx"))
    assert loaded.content is None and loaded.content_weight == 0.0


def test_old_index_without_content_key_loads_with_defaults(tmp_path):
    path = _pool_retriever().save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["content"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = PIERetriever.load(path)
    assert loaded.content_weight == DEFAULT_CONTENT_WEIGHT and loaded.content.kind == "bm25"
    assert len(loaded.retrieve("Write a poem about taxes.", k=2, content_weight=0.5)) == 2


@pytest.mark.parametrize(("edit", "match"), [
    (lambda c: c.update(weight=2), "content.weight must be a number in"),
    (lambda c: c.update(scorer="tfidf"), "content must be an object with exactly the keys"),
    (lambda c: c.update(extra=1), "content must be an object with exactly the keys"),
    (lambda c: c.update(k1="x"), "k1 must be in"),
    (lambda c: c.update(files=["evil.npy"]), "fields/files must be"),
])
def test_tampered_content_entry_is_refused(tmp_path, edit, match):
    path = _pool_retriever(content_scorer="bm25").save(tmp_path / "idx")
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest["content"])
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match=match):
        PIERetriever.load(path)


def test_dense_vectors_that_do_not_match_are_refused(tmp_path):
    r = _pool_retriever(content_scorer=DenseContent(HashingEncoder(dim=32)))
    path = r.save(tmp_path / "idx")
    import hashlib

    labels = np.load(path / "content_labels.npy")
    np.save(path / "content_labels.npy", labels[:-1])
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["content_labels.npy"] = hashlib.sha256((path / "content_labels.npy").read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="content vectors do not match the index"):
        PIERetriever.load(path)


def test_content_queries_score_content_apart_from_the_task_query():
    r = _pool_retriever(content_scorer="bm25")
    hits = r.retrieve("Summarize the text.", k=2, content_weight=1.0, fetch_k=5, content_query="Summarize the text. Taxes and receipts.")
    assert hits[0].id in {"sum-tax", "poem-tax"}
    with pytest.raises(ConfigError, match="content_queries must be a list of 2 strings"):
        r.retrieve_batch(["a", "b"], content_weight=0.5, content_queries=["only one"])


def test_prompt_builder_and_langchain_use_the_retriever_default():
    from pie_retriever.prompting.builder import FewShotPromptBuilder

    q = "Summarize the text."
    r = _pool_retriever(content_scorer="bm25", content_weight=1.0)
    builder = FewShotPromptBuilder(r, k=2, retrieve_options={"fetch_k": 5})
    built = builder.retrieve([{"instruction": q, "input": "Taxes and receipts."}])[0]
    assert [h.id for h in built] == [h.id for h in r.retrieve(q, k=2, fetch_k=5, content_query=q + "\nTaxes and receipts.")]
    override = FewShotPromptBuilder(r, k=2, retrieve_options={"content_weight": 0.0}).retrieve([q])[0]
    assert [h.id for h in override] == [h.id for h in r.retrieve(q, k=2, content_weight=0.0)]
    pytest.importorskip("langchain_core")
    docs = r.as_langchain_retriever(k=2, fetch_k=5).invoke("Taxes and receipts, please.")
    assert [d.metadata["id"] for d in docs] == [h.id for h in r.retrieve("Taxes and receipts, please.", k=2, fetch_k=5)]
