"""PIERetriever with the fast HashingEncoder (behaviour) and the real MiniLM (end to end)."""

import warnings

import numpy as np
import pytest

from pie_retriever import Demonstration, PIERetriever
from pie_retriever.errors import DuplicateIdError, EmptyPoolError, InvalidDemonstrationError


@pytest.fixture
def retriever(small_pool, fake_encoder):
    return PIERetriever.from_demonstrations(small_pool, fake_encoder)


def test_build_and_retrieve(retriever):
    assert len(retriever) == 6
    hits = retriever.retrieve("Translate this sentence about the ocean into French.", k=3)
    assert [h.rank for h in hits] == [0, 1, 2]
    assert hits[0].id == "t1"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)  # fp16 vectors by default
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_add_returns_ids_and_generates_missing(retriever):
    ids = retriever.add([{"instruction": "List three fruits."}, Demonstration("Name a colour.", id="c1")])
    assert ids[1] == "c1" and ids[0].startswith("demo-")
    assert len(retriever) == 8 and "c1" in retriever
    assert retriever.get("c1").instruction == "Name a colour."


def test_duplicate_ids_add_nothing(retriever):
    with pytest.raises(DuplicateIdError, match="Duplicate demonstration id 'p1'"):
        retriever.add([{"id": "new", "instruction": "x"}, {"id": "p1", "instruction": "y"}])
    assert len(retriever) == 6 and "new" not in retriever
    with pytest.raises(DuplicateIdError, match="'z'"):
        retriever.add([{"id": "z", "instruction": "x"}, {"id": "z", "instruction": "y"}])
    assert len(retriever) == 6


def test_delete(retriever):
    assert retriever.delete(["p1", "s1"]) == 2
    assert len(retriever) == 4
    hits = retriever.retrieve("Write a poem about the ocean.", k=4)
    assert "p1" not in [h.id for h in hits]
    with pytest.raises(KeyError, match="Unknown demonstration id"):
        retriever.delete("p1")
    retriever.add([{"id": "p1", "instruction": "Write a poem about the ocean."}])  # id can be reused after delete
    assert retriever.retrieve("Write a poem about the ocean.", k=1)[0].id == "p1"


def test_filter_returns_k_when_k_match(fake_encoder):
    demos = [{"instruction": f"ocean text number {i}", "metadata": {"task": "a" if i % 10 == 0 else "b"}} for i in range(200)]
    r = PIERetriever.from_demonstrations(demos, fake_encoder)
    hits = r.retrieve("ocean text number 5", k=5, filter={"task": "a"})
    assert len(hits) == 5 and all(h.demonstration.metadata["task"] == "a" for h in hits)
    hits = r.retrieve("ocean text", k=3, filter={"task": ["a", "b"]})
    assert len(hits) == 3
    hits = r.retrieve("ocean text", k=3, filter=lambda d: d.metadata["task"] == "a")
    assert len(hits) == 3 and all(h.demonstration.metadata["task"] == "a" for h in hits)


def test_unknown_filter_key(retriever):
    with pytest.raises(KeyError, match=r"Unknown metadata filter key\(s\) \['lang'\]; keys present in the pool: \['task', 'topic'\]"):
        retriever.retrieve("x y", filter={"lang": "en"})


def test_k_larger_than_pool_returns_all_and_warns_once(retriever):
    with pytest.warns(UserWarning, match="k=50 is larger than the pool"):
        hits = retriever.retrieve("poem", k=50)
    assert len(hits) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(retriever.retrieve("poem", k=50)) == 6


def test_min_score_and_mmr(retriever):
    hits = retriever.retrieve("Write a poem about the ocean.", k=6, min_score=0.5)
    assert hits and all(h.score >= 0.5 for h in hits)
    plain = retriever.retrieve("ocean", k=3)
    diverse = retriever.retrieve("ocean", k=3, mmr=True, mmr_lambda=0.3)
    assert len(diverse) == 3 and diverse[0].id == plain[0].id
    assert [h.rank for h in diverse] == [0, 1, 2]
    with pytest.raises(ValueError, match="mmr_lambda"):
        retriever.retrieve("ocean", mmr=True, mmr_lambda=2)


def test_retrieve_batch_uses_one_encoder_call(retriever):
    before = retriever.encoder.calls
    results = retriever.retrieve_batch(["poem about the ocean", "translate taxes", "summarize tax law"], k=2)
    assert retriever.encoder.calls == before + 1
    assert [len(r) for r in results] == [2, 2, 2]
    single = [retriever.retrieve(q, k=2) for q in ["poem about the ocean", "translate taxes", "summarize tax law"]]
    assert [[h.id for h in r] for r in results] == [[h.id for h in r] for r in single]


def test_embed_fields_and_dedupe(fake_encoder):
    demos = [
        {"id": "a", "instruction": "Translate.", "input": "Bonjour le monde"},
        {"id": "b", "instruction": "Translate.", "input": "Hola mundo"},
        {"id": "c", "instruction": "Translate."},
    ]
    r = PIERetriever.from_demonstrations(demos, fake_encoder, embed_fields=["instruction", "input"])
    assert r.retrieve("hola mundo", k=1)[0].id == "b"
    d = PIERetriever.from_demonstrations(demos, fake_encoder, dedupe=True)
    assert len(d) == 1
    assert d.add([{"id": "x", "instruction": "Translate."}]) == ["a"]
    with pytest.raises(ValueError, match="embed_fields"):
        PIERetriever(fake_encoder, embed_fields=["title"])


def test_bad_inputs(retriever, fake_encoder):
    with pytest.raises(EmptyPoolError, match="empty pool"):
        PIERetriever.from_demonstrations([], fake_encoder)
    with pytest.raises(ValueError, match="query is empty"):
        retriever.retrieve("   ")
    with pytest.raises(TypeError, match="query must be a string, got int"):
        retriever.retrieve(42)
    with pytest.raises(TypeError, match="got NoneType"):
        retriever.retrieve(None)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            retriever.retrieve("poem", k=k)
    with pytest.raises(InvalidDemonstrationError, match=r"Demonstration #1: Demonstration.instruction must be a string, got NoneType"):
        retriever.add([{"instruction": "ok"}, {"instruction": None}])
    with pytest.raises(InvalidDemonstrationError, match="no 'instruction' key"):
        retriever.add([{"prompt": "x"}])
    assert len(retriever) == 6
    # None input/output fields are accepted as empty
    assert Demonstration.from_any({"instruction": "x", "input": None, "output": None}).input == ""
    with pytest.raises(EmptyPoolError, match="retriever is empty"):
        PIERetriever(fake_encoder).retrieve("poem")


def test_real_model_end_to_end(minilm, small_pool):
    r = PIERetriever.from_demonstrations(small_pool, minilm)
    hits = r.retrieve("Compose a poem about the ocean.", k=2)
    assert hits[0].id == "p1"
    vecs = r.index.reconstruct(np.array([0, 1]))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)  # fp16 vectors by default


def test_prompt_routing_documents_vs_queries(small_pool):
    """Documents are encoded with the encoder's prompt and queries with its query prompt (fast, prompt-aware fake)."""

    from pie_retriever.encoders.hashing import HashingEncoder

    enc = HashingEncoder(dim=64, prompt="plain", query_prompt="pie")
    r = PIERetriever.from_demonstrations(small_pool, enc, index="numpy")
    hit = r.retrieve("Write a poem about the ocean.", k=1)[0]
    q = enc.encode(["Write a poem about the ocean."], prompt="pie")[0]
    d = enc.encode([hit.demonstration.instruction], prompt="plain")[0]
    assert abs(float(q @ d) - hit.score) < 1e-5
    wrong = enc.encode([hit.demonstration.instruction], prompt="pie")[0]
    assert abs(float(q @ wrong) - hit.score) > 1e-3  # routing the document through the query prompt would differ
