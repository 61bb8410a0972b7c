"""A writer (adds and deletes) during concurrent searches: an added id is found by the next request after its reply,
and a deleted id is never returned by a search sent after the delete's reply."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from service_harness import READ_KEY, WRITE_KEY, Server

pytestmark = pytest.mark.service

ROUNDS = 15


def test_writes_are_visible_to_the_next_request(index_copy):
    server = Server([index_copy]).start()
    deleted_at: dict[str, float] = {}  # id -> time its delete was acknowledged
    seen: list[tuple[float, set[str]]] = []  # (time the search was sent, ids returned)
    stop = threading.Event()

    def searcher() -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=30) as c:
            for _ in range(3000):  # bounded
                if stop.is_set():
                    return
                sent = time.monotonic()
                r = c.post("/v1/indexes/pool/search", json={"query": "Write a riddle about consistency marker", "k": 5})
                assert r.status_code == 200
                seen.append((sent, {h["id"] for h in r.json()["hits"]}))

    threads = [threading.Thread(target=searcher, daemon=True) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        with server.client(WRITE_KEY) as c:
            for n in range(ROUNDS):
                text = f"Write a riddle about consistency marker number {n}"
                (new_id,) = c.post("/v1/indexes/pool/demonstrations",
                                   json={"demonstrations": [{"instruction": text, "output": "..."}]}).json()["ids"]
                hits = c.post("/v1/indexes/pool/search", json={"query": text, "k": 1}).json()["hits"]
                assert hits[0]["id"] == new_id, f"round {n}: the added id is not found by the next request"
                assert c.request("DELETE", "/v1/indexes/pool/demonstrations", json={"ids": [new_id]}).json()["deleted"] == 1
                deleted_at[new_id] = time.monotonic()
                hits = c.post("/v1/indexes/pool/search", json={"query": text, "k": 5}).json()["hits"]
                assert new_id not in {h["id"] for h in hits}
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        stop.set()
        server.stop()
    late = [(i, sent) for sent, ids in seen for i in ids if i in deleted_at and sent > deleted_at[i]]
    assert len(seen) > ROUNDS and not late, late[:5]
