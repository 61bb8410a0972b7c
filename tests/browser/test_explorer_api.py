"""The explorer's endpoints without a browser: BM25 against the library's BM25Retriever, the map's colour groups and
projection, the caches rebuilt after writes, relabel's scopes and errors, the static files' fixed names."""

from __future__ import annotations

import numpy as np
import pytest
from service_harness import READ_KEY, WRITE_KEY, Server

from pie_retriever.service.explorer import MAX_COLOURS, OTHER, project
from pie_retriever.types import Demonstration


def test_project_groups_and_axes():
    pool = [Demonstration(f"instruction {i}", id=f"d{i}", metadata={"task": f"t{i % 25:02d}"}) for i in range(100)]
    pool.append(Demonstration("no label", id="bare"))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(pool), 8)).astype(np.float32)
    vectors[:, 0] *= 30.0  # the first principal axis is (up to sign) the first coordinate
    out = project(pool, vectors)
    assert len(out["groups"]) == MAX_COLOURS and out["groups"][-1] == OTHER
    assert sum(g == OTHER for g in out["labels"]) == len(pool) - sum(out["labels"].count(g) for g in out["groups"][:-1])
    assert out["tasks"][-1] == "" and out["ids"] == [d.id for d in pool]
    corr = np.corrcoef(out["x"], vectors[:, 0])[0, 1]
    assert abs(corr) > 0.99
    few = project(pool[:10], vectors[:10])
    assert OTHER not in few["groups"] and len(few["groups"]) == 10


@pytest.fixture
def live(index_copy):
    srv = Server([index_copy]).start()
    yield srv
    srv.stop()


@pytest.mark.service
def test_bm25_matches_the_library_and_follows_writes(live, browser_index):
    from pie_retriever import PIERetriever
    from pie_retriever.retrieval.bm25 import BM25Retriever

    retriever = PIERetriever.load(browser_index)
    with retriever.snapshot() as (demos, _):
        ref = BM25Retriever([demos[i] for i in sorted(demos)])
    read, write = live.client(READ_KEY), live.client(WRITE_KEY)
    query = "Translate this sentence into French please"
    hits = read.post("/v1/indexes/pool/bm25", json={"query": query, "k": 5}).json()["hits"]
    scores = dict(zip([d.id for d in ref.demonstrations], ref.scores([query])[0].tolist()))
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert [round(h["score"], 4) for h in hits] == [round(s, 4) for s in sorted(scores.values(), reverse=True)[:5]]
    assert all(abs(h["score"] - scores[h["id"]]) < 1e-4 for h in hits)
    only = read.post("/v1/indexes/pool/bm25", json={"query": query, "k": 3, "filter": {"task": "write|poem"}}).json()["hits"]
    assert len(only) == 3 and {h["metadata"]["task"] for h in only} == {"write|poem"}
    assert read.post("/v1/indexes/pool/bm25", json={"query": query, "filter": {"task": "no such task"}}).status_code == 404
    batch = read.post("/v1/indexes/pool/bm25", json={"queries": [query, "count the words"], "k": 2}).json()["results"]
    assert [h["id"] for h in batch[0]] == [h["id"] for h in hits[:2]]
    # a write rebuilds BM25 and the map at their next use
    assert len(read.get("/v1/indexes/pool/map").json()["ids"]) == 249
    new = {"id": "zz-1", "instruction": "Quixotically zigzag the xylophone", "metadata": {"task": "play|music"}}
    assert write.post("/v1/indexes/pool/demonstrations", json={"demonstrations": [new]}).status_code == 200
    top = read.post("/v1/indexes/pool/bm25", json={"query": "xylophone zigzag", "k": 1}).json()["hits"][0]
    assert top["id"] == "zz-1" and top["score"] > 0
    m = read.get("/v1/indexes/pool/map").json()
    assert len(m["ids"]) == 250 and m["tasks"][m["ids"].index("zz-1")] == "play|music"


@pytest.mark.service
def test_relabel_scopes_errors_and_static_files(live):
    read, write = live.client(READ_KEY), live.client(WRITE_KEY)
    body = {"id": "d-write-poem-01", "task": "write|verse"}
    assert read.post("/v1/indexes/pool/relabel", json=body).status_code == 403
    assert live.client(None).post("/v1/indexes/pool/relabel", json=body).status_code == 401
    assert write.post("/v1/indexes/pool/relabel", json={"id": "nope", "task": "x"}).status_code == 404
    assert write.post("/v1/indexes/nope/relabel", json=body).status_code == 404
    assert write.post("/v1/indexes/pool/relabel", json={"id": "d-write-poem-01", "task": ""}).status_code == 422
    done = write.post("/v1/indexes/pool/relabel", json=body).json()
    assert done == {"index": "pool", "id": "d-write-poem-01", "task": "write|verse", "previous": "write|poem", "size": 249}
    hit = read.post("/v1/indexes/pool/search", json={"query": "Write a short poem about the ocean.", "k": 1}).json()["hits"][0]
    assert hit["id"] == "d-write-poem-01" and hit["metadata"] == {"task": "write|verse", "topic": "ocean"}
    anon = live.client(None)
    page = anon.get("/explorer")
    assert page.status_code == 200 and "/explorer/static/plotly.min.js" in page.text and "http" not in page.text.split("<body>")[1]
    assert anon.get("/explorer/static/plotly.min.js").status_code == 200
    for bad in ("explorer.html", "..%2Fapp.py", "routes.py", "x.js"):
        assert anon.get(f"/explorer/static/{bad}").status_code == 404, bad
    assert anon.get("/v1/indexes/pool/map").status_code == 401
