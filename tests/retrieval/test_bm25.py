"""BM25Retriever: same retrieve() shape as PIERetriever, never mutates the caller's demonstrations."""

from __future__ import annotations

import pytest

from pie_retriever import BM25Retriever, Demonstration, PIERetriever
from pie_retriever.errors import ConfigError, DuplicateIdError, EmptyPoolError


def test_retrieves_by_words(small_pool):
    bm25 = BM25Retriever(small_pool)
    hits = bm25.retrieve("translate the ocean sentence", k=2)
    assert [h.rank for h in hits] == [0, 1] and hits[0].id == "t1"
    assert bm25.scores(["ocean"]).shape == (1, len(small_pool))


def test_copies_demonstrations_and_allocates_ids_like_the_retriever(fake_encoder):
    demos = [Demonstration("write poems"), Demonstration("bake bread", id="demo-0"), Demonstration("sing songs")]
    bm25 = BM25Retriever(demos)
    ids = [d.id for d in bm25.demonstrations]
    assert len(set(ids)) == 3 and ids[1] == "demo-0"
    assert [d.id for d in demos] == [None, "demo-0", None]  # the caller's objects are untouched
    pie = PIERetriever.from_demonstrations([Demonstration("write poems"), Demonstration("bake bread", id="demo-0"), Demonstration("sing songs")], fake_encoder)
    assert len({d.id for d in pie.demonstrations}) == 3


def test_errors():
    with pytest.raises(EmptyPoolError):
        BM25Retriever([])
    with pytest.raises(DuplicateIdError, match="Duplicate demonstration id 'x'"):
        BM25Retriever([{"instruction": "write poems", "id": "x"}, {"instruction": "bake bread", "id": "x"}])
    with pytest.raises(ConfigError, match="embed_fields"):
        BM25Retriever(["write poems"], embed_fields=("nope",))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        BM25Retriever(["write poems"]).retrieve("poems", k=0)


def test_stopword_only_query_scores_zero(small_pool):
    import numpy as np

    scores = BM25Retriever(small_pool).scores(["the of and", "ocean"])
    assert not np.any(scores[0]) and np.any(scores[1])
