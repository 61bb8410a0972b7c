"""Durable writes: ``kill -9`` of a real server during a stream of adds and deletes, 20 times. After each kill the
folder plus its write-ahead log loads, every acknowledged write is there, and no write is half-applied (a request's
ids are all present or all absent); the restarted server serves the same pool."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest
from service_harness import MODEL, WRITE_KEY, Server

pytestmark = pytest.mark.service

TRIALS = 20
SEED = 26


class Writer(threading.Thread):
    """Sequential writes until the server dies (or ``max_ops``): adds of 1-3 demonstrations with known ids, and every
    third op a delete of one earlier acknowledged add. Records what was acknowledged and what was in flight."""

    def __init__(self, url: str, trial: int, rng: random.Random, live: list[list[str]], max_ops: int = 400) -> None:
        super().__init__(daemon=True)
        self.url, self.trial, self.rng, self.max_ops = url, trial, rng, max_ops
        self.live = live  # acknowledged add groups not deleted (shared across trials)
        self.acked_adds: list[list[str]] = []
        self.acked_deletes: list[list[str]] = []
        self.in_flight: tuple[str, list[str]] | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {WRITE_KEY}"}, timeout=10) as c:
            for n in range(self.max_ops):
                if n % 3 == 2 and self.live:
                    group = self.live.pop(self.rng.randrange(len(self.live)))
                    op, call = "delete", lambda g=group: c.request("DELETE", "/v1/indexes/pool/demonstrations", json={"ids": g})
                else:
                    group = [f"k9-{self.trial}-{n}-{j}" for j in range(self.rng.randint(1, 3))]
                    demos = [{"id": i, "instruction": f"Write note {i} about durable logs", "output": "ok",
                              "metadata": {"task": "write|note"}} for i in group]
                    op, call = "add", lambda d=demos: c.post("/v1/indexes/pool/demonstrations", json={"demonstrations": d})
                self.in_flight = (op, group)
                try:
                    r = call()
                except httpx.HTTPError:
                    return  # killed: this op was never acknowledged
                if r.status_code != 200:
                    raise AssertionError(f"{op} {group}: {r.status_code} {r.text}")
                self.in_flight = None
                (self.acked_adds if op == "add" else self.acked_deletes).append(group)
                if op == "add":
                    self.live.append(group)


def _ids_on_disk(folder, encoder) -> tuple[set[str], int] | None:
    """The ids after loading the folder and replaying its log as the server does at start (without changing the files)."""
    from pie_retriever import PIERetriever
    from pie_retriever.service.durability import WriteAheadLog, replay, wal_path

    try:
        r = PIERetriever.load(folder, encoder=encoder)
        replay(r, WriteAheadLog(wal_path(folder)).records(truncate=False))
    except Exception:
        return None
    with r.snapshot() as (demos, _):
        ids = [d.id for d in demos.values()]
    return set(ids), len(r)


def test_kill9_during_writes_keeps_every_acknowledged_write(index_copy):
    from pie_retriever.encoders import make_encoder

    encoder = make_encoder(MODEL)
    rng = random.Random(SEED)
    live: list[list[str]] = []
    all_added: list[list[str]] = []
    all_deleted: list[list[str]] = []
    table = {"trials": 0, "acknowledged": 0, "found": 0, "unloadable": 0, "half_applied": 0, "restart_size_mismatch": 0}
    expected_size = None
    start = time.monotonic()
    for trial in range(TRIALS):
        server = Server([index_copy]).start()
        if expected_size is not None:
            with server.client() as c:
                size = c.get("/v1/indexes").json()["indexes"][0]["size"]
            table["restart_size_mismatch"] += size != expected_size
        writer = Writer(server.url, trial, rng, live)
        writer.start()
        time.sleep(rng.uniform(0.1, 0.45))
        server.kill()
        writer.join(timeout=15)
        assert not writer.is_alive()
        all_added += writer.acked_adds
        all_deleted += writer.acked_deletes
        table["trials"] += 1
        table["acknowledged"] += len(writer.acked_adds) + len(writer.acked_deletes)
        loaded = _ids_on_disk(index_copy, encoder)
        if loaded is None:
            table["unloadable"] += 1
            continue
        ids, n = loaded
        assert n == len(ids), "a demonstration id appears twice after replay"
        if writer.in_flight is not None:  # not acknowledged: either fully applied or not at all
            op, group = writer.in_flight
            table["half_applied"] += len(set(group) & ids) not in (0, len(group))
            if op == "delete" and not set(group) & ids:
                all_deleted.append(group)
            elif op == "delete":
                live.append(group)  # the delete did not happen; the group is still live
            elif set(group) <= ids:
                live.append(group)
                all_added.append(group)
        deleted = {i for g in all_deleted for i in g}
        # an acknowledged add is found when its ids are there (or a later delete of them is); a delete when they are gone
        table["found"] += sum(set(g) <= ids or (set(g) <= deleted and not set(g) & ids) for g in writer.acked_adds)
        table["found"] += sum(not set(g) & ids for g in writer.acked_deletes)
        for g in all_added:
            assert (set(g) <= ids) != (set(g) <= deleted), f"trial {trial}: group {g} wrong after restart"
        expected_size = n
    elapsed = time.monotonic() - start
    print(f"\nkill -9 table ({elapsed:.1f} s): {table}")
    assert table["trials"] == TRIALS and table["unloadable"] == 0 and table["half_applied"] == 0
    assert table["restart_size_mismatch"] == 0
    assert table["acknowledged"] >= TRIALS * 3, "too few writes were acknowledged to test anything"
    assert table["found"] == table["acknowledged"]
