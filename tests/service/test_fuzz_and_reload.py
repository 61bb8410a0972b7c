"""A schemathesis run against a real server's /openapi.json (fixed seed, bounded cases and time): no 5xx and every
documented reply matches its schema. Reload (``POST /v1/admin/reload``) under search load swaps to the folder on disk;
SIGTERM drains requests in flight."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from service_harness import READ_KEY, WRITE_KEY, Server

pytestmark = pytest.mark.service

FUZZ_SEED = 26
FUZZ_EXAMPLES = 20  # per operation and phase; ~400 cases in all
FUZZ_TIMEOUT = 120


def test_schemathesis_no_5xx_and_schema_conformance(built_index, tmp_path):
    folder = tmp_path / "pool"
    shutil.copytree(built_index, folder)
    server = Server([folder]).start()
    try:
        cli = Path(sys.executable).with_name("schemathesis")
        cmd = [str(cli), "run", f"{server.url}/openapi.json", "--seed", str(FUZZ_SEED), "-n", str(FUZZ_EXAMPLES),
               "-c", "not_a_server_error,response_schema_conformance", "--phases", "examples,coverage,fuzzing",
               "-H", f"Authorization: Bearer {WRITE_KEY}", "-w", "1", "--no-color", "--request-timeout", "20"]
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FUZZ_TIMEOUT, cwd=tmp_path)
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    m = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    print(f"\nschemathesis: {m.group(0) if m else '?'} in {elapsed:.1f} s (seed {FUZZ_SEED}, -n {FUZZ_EXAMPLES})")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert m and int(m.group(1)) >= 200 and m.group(1) == m.group(2), proc.stdout[-3000:]
    assert "Traceback" not in server.log, server.log[-3000:]


def _search_loop(url: str, stop: threading.Event, codes: list[int], n_queries: int = 1) -> None:
    body = {"query": "Write a limerick about a dog", "k": 2} if n_queries == 1 else {"queries": [f"Write poem {i}" for i in range(n_queries)], "k": 2}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {READ_KEY}"}, timeout=30) as c:
        for _ in range(2000):  # bounded
            if stop.is_set():
                return
            try:
                r = c.post("/v1/indexes/pool/search", json=body)
            except httpx.TransportError:  # the server has shut down (the SIGTERM test): no reply is not an error reply
                return
            codes.append(r.status_code)


def test_reload_under_load_swaps_to_the_folder_on_disk(index_copy):
    from pie_retriever import PIERetriever

    server = Server([index_copy]).start()
    try:
        stop, codes = threading.Event(), []
        threads = [threading.Thread(target=_search_loop, args=(server.url, stop, codes)) for _ in range(3)]
        for t in threads:
            t.start()
        # another process changes the folder on disk (an offline re-index), then the service reloads it
        r = PIERetriever.load(index_copy)
        r.add([{"id": "reloaded-1", "instruction": "Compose a sonnet about reloading indexes", "output": "..."}])
        r.save(index_copy)
        with server.client(WRITE_KEY) as c:
            time.sleep(0.3)
            before = c.get("/v1/indexes").json()["indexes"][0]
            reply = c.post("/v1/admin/reload", json={"indexes": ["pool"]})
            after = c.get("/v1/indexes").json()["indexes"][0]
            hits = c.post("/v1/indexes/pool/search", json={"query": "Compose a sonnet about reloading indexes", "k": 1}).json()
            assert c.post("/v1/admin/reload", json={"indexes": ["nope"]}).status_code == 404
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert reply.status_code == 200 and reply.json() == {"reloaded": {"pool": before["size"] + 1}}
        assert after["generation"] == before["generation"] + 1 and after["size"] == before["size"] + 1
        assert hits["hits"][0]["id"] == "reloaded-1"
        assert codes and set(codes) == {200}, sorted(set(codes))
        # SIGHUP reloads too: another offline change, then the signal; the generation goes up (bounded wait)
        r.delete(["reloaded-1"])
        r.save(index_copy)
        server.proc.send_signal(signal.SIGHUP)
        with server.client() as c:
            for _ in range(100):
                info = c.get("/v1/indexes").json()["indexes"][0]
                if info["generation"] > after["generation"]:
                    break
                time.sleep(0.1)
        assert info["generation"] == after["generation"] + 1 and info["size"] == before["size"]
    finally:
        server.stop()


def test_sigterm_drains_requests_in_flight(index_copy):
    server = Server([index_copy]).start()
    codes: list[int] = []
    stop = threading.Event()
    # batches of 64 queries take long enough that one is in flight when SIGTERM arrives
    threads = [threading.Thread(target=_search_loop, args=(server.url, stop, codes, 64)) for _ in range(2)]
    for t in threads:
        t.start()
    for _ in range(200):  # bounded (20 s): SIGTERM once the clients have had replies, with batches still being sent
        if len(codes) >= 2:
            break
        time.sleep(0.1)
    n_before = len(codes)
    rc = server.stop(timeout=40)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    # uvicorn shuts down gracefully and then re-raises the SIGTERM it caught, hence -15 (stop() would raise on a hang)
    assert rc in (0, -15), server.log[-2000:]
    assert "Traceback" not in server.log, server.log[-2000:]
    assert n_before > 0 and set(codes) == {200}, codes  # nothing in flight was cut off with an error reply
