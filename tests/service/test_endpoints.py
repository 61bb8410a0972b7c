"""Every endpoint of a real server, and each error: 401, 403, 404, 413, 422 naming the field."""

from __future__ import annotations

import httpx
import pytest
from service_harness import READ_KEY, WRITE_KEY

pytestmark = pytest.mark.service

QUERY = "Write a limerick about a dog"


def test_healthz_readyz_and_openapi(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready", "indexes": ["pool"]}
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/indexes/{name}/search" in spec["paths"] and httpx.get(f"{server.url}/docs").status_code == 200
    assert spec["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"] == 100


def test_list_indexes(server):
    with server.client() as c:
        (info,) = c.get("/v1/indexes").json()["indexes"]
    assert info["name"] == "pool" and info["size"] >= 249 and info["model"] == "pie-minilm-lc-onnx"
    assert info["encoder"] == "onnx" and info["tasks"] > 10


def test_search_one_and_many(server):
    with server.client() as c:
        one = c.post("/v1/indexes/pool/search", json={"query": QUERY, "k": 3}).json()
        many = c.post("/v1/indexes/pool/search", json={"queries": [QUERY, "Translate to French: good morning"], "k": 2}).json()
        flt = c.post("/v1/indexes/pool/search", json={"query": QUERY, "k": 5, "filter": {"task": "translate|sentence"}}).json()
        mmr = c.post("/v1/indexes/pool/search", json={"query": QUERY, "k": 4, "mmr": True, "mmr_lambda": 0.3}).json()
    assert [h["rank"] for h in one["hits"]] == [1, 2, 3]
    assert one["hits"][0]["metadata"]["task"] == "write|poem" and set(one["hits"][0]) >= {"id", "score", "instruction", "input", "output"}
    assert len(many["results"]) == 2 and many["results"][1][0]["metadata"]["task"].startswith("translate")
    assert flt["hits"] and all(h["metadata"]["task"] == "translate|sentence" for h in flt["hits"])
    assert len(mmr["hits"]) == 4


def test_fewshot_is_what_the_builder_builds(server, built_index):
    from pie_retriever import PIERetriever
    from pie_retriever.prompting.builder import FewShotPromptBuilder

    r = PIERetriever.load(built_index)
    with server.client() as c:
        text = c.post("/v1/indexes/pool/fewshot", json={"query": QUERY, "k": 3}).json()
        chat = c.post("/v1/indexes/pool/fewshot", json={"query": "Summarize this", "input": "A long text.", "k": 2,
                                                       "format": "chat", "system_prompt": "Be brief."}).json()
    built = FewShotPromptBuilder(r, k=3).build(QUERY)
    assert text["prompt"] == built.prompt and text["ids"] == [h.demonstration.id for h in built.demonstrations]
    built_chat = FewShotPromptBuilder(r, k=2, system_prompt="Be brief.").build_chat("Summarize this", "A long text.")
    assert chat["messages"] == built_chat.messages and chat["prompt"] is None
    assert chat["ids"] == [h.demonstration.id for h in built_chat.demonstrations]


def test_metrics(server):
    with server.client() as c:
        c.post("/v1/indexes/pool/search", json={"query": QUERY})
        text = c.get("/metrics").text
    for name in ("pie_requests_total", "pie_request_seconds_bucket", "pie_search_batch_queries_bucket",
                 "pie_search_queue_queries", 'pie_index_demonstrations{index="pool"}'):
        assert name in text, name
    assert 'route="/v1/indexes/{name}/search"' in text


def test_keys_401_and_403(server):
    body = {"demonstrations": [{"instruction": "Write a haiku about rain", "output": "..."}]}
    assert httpx.post(f"{server.url}/v1/indexes/pool/search", json={"query": QUERY}).status_code == 401
    with server.client("wrong-key-0123456789abcdef") as c:
        assert c.get("/v1/indexes").status_code == 401
    with server.client(READ_KEY) as c:
        r = c.post("/v1/indexes/pool/demonstrations", json=body)
        assert r.status_code == 403 and "write key" in r.json()["detail"]
        assert c.request("DELETE", "/v1/indexes/pool/demonstrations", json={"ids": ["x"]}).status_code == 403
        assert c.post("/v1/admin/reload").status_code == 403
    r = httpx.get(f"{server.url}/v1/indexes", headers={"X-API-Key": WRITE_KEY})
    assert r.status_code == 200


def test_404_unknown_index_and_ids(server):
    with server.client(WRITE_KEY) as c:
        r = c.post("/v1/indexes/..%2Fetc/search", json={"query": QUERY})
        assert r.status_code == 404
        r = c.post("/v1/indexes/nope/search", json={"query": QUERY})
        assert r.status_code == 404 and "nope" in r.json()["detail"] and "pool" in r.json()["detail"]
        r = c.request("DELETE", "/v1/indexes/pool/demonstrations", json={"ids": ["no-such-id"]})
        assert r.status_code == 404 and "no-such-id" in r.json()["detail"]
        assert c.post("/v1/indexes/pool/search", json={"query": QUERY, "filter": {"colour": "red"}}).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"query": QUERY, "k": 101}, "k"),
    ({"query": QUERY, "k": 0}, "k"),
    ({"query": "x" * 5000}, "query"),
    ({"queries": ["a"] * 65}, "queries"),
    ({"query": QUERY, "kk": 3}, "kk"),
    ({"query": QUERY, "mmr_lambda": 2}, "mmr_lambda"),
    ({"query": QUERY, "filter": {"task": {"nested": 1}}}, "filter"),
])
def test_422_names_the_field(server, body, field):
    with server.client() as c:
        r = c.post("/v1/indexes/pool/search", json=body)
    assert r.status_code == 422
    assert any(field in d["loc"] for d in r.json()["detail"]), r.json()


def test_422_bad_json_and_missing_query(server):
    with server.client() as c:
        r = c.post("/v1/indexes/pool/search", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
        r = c.post("/v1/indexes/pool/search", json={"k": 2})
        assert r.status_code == 422 and "exactly one of `query`" in r.text
        r = c.post("/v1/indexes/pool/fewshot", json={"query": QUERY, "token_budget": 100})
        assert r.status_code == 422 and "--tokenizer" in r.text and r.json()["detail"][0]["loc"] == ["body", "token_budget"]


def test_413_body_too_large(server):
    big = {"demonstrations": [{"instruction": "x" * 10000, "output": "y" * 60000}] * 20}
    with server.client(WRITE_KEY) as c:
        r = c.post("/v1/indexes/pool/demonstrations", json=big)
        assert r.status_code == 413 and "1048576" in r.json()["detail"][0]["msg"]
        chunks = (b'{"query": "' + b"a" * 100_000 for _ in range(12))
        r = c.post("/v1/indexes/pool/search", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_add_then_delete(server):
    demo = {"instruction": "Write a limerick about a parrot named Kiwi", "output": "...", "metadata": {"task": "write|poem"}}
    with server.client(WRITE_KEY) as c:
        added = c.post("/v1/indexes/pool/demonstrations", json={"demonstrations": [demo, {**demo, "id": "kiwi-2", "instruction": "Pen a limerick about Kiwi the parrot"}]}).json()
        assert added["ids"][1] == "kiwi-2" and added["ids"][0].startswith("svc-")
        for query, new_id in zip((demo["instruction"], "Pen a limerick about Kiwi the parrot"), added["ids"]):
            hits = c.post("/v1/indexes/pool/search", json={"query": query, "k": 3}).json()["hits"]
            assert new_id in {h["id"] for h in hits}
        dup = c.post("/v1/indexes/pool/demonstrations", json={"demonstrations": [{**demo, "id": "kiwi-2"}]})
        assert dup.status_code == 409 and "kiwi-2" in dup.json()["detail"]
        gone = c.request("DELETE", "/v1/indexes/pool/demonstrations", json={"ids": added["ids"]}).json()
        assert gone["deleted"] == 2
        hits = c.post("/v1/indexes/pool/search", json={"query": demo["instruction"], "k": 5}).json()["hits"]
        assert not {h["id"] for h in hits} & set(added["ids"])
