"""Keys and binding: scopes, constant-time comparison, keys never shown or logged, a non-loopback bind without keys
refused, CORS off by default."""

from __future__ import annotations

import httpx
import pytest
from service_harness import READ_KEY, WRITE_KEY

pytestmark = pytest.mark.service


def test_keyring_scopes_and_never_shows_keys(monkeypatch, tmp_path):
    from pie_retriever.errors import ConfigError
    from pie_retriever.service.keys import KeyRing, load_keys, parse_keys

    ring = KeyRing(parse_keys(f"read:{READ_KEY}\n# a comment\nwrite:{WRITE_KEY}\n", "test"))
    assert ring.scope_of(READ_KEY) == "read" and ring.scope_of(WRITE_KEY) == "write"
    assert ring.scope_of(READ_KEY[:-1]) is None and ring.scope_of(None) is None and ring.scope_of("") is None
    assert ring.allows(WRITE_KEY, "read") and not ring.allows(READ_KEY, "write")
    assert READ_KEY not in repr(ring) and WRITE_KEY not in repr(ring)
    with pytest.raises(ConfigError) as err:
        parse_keys("admin:secret-secret-secret-1", "test")
    assert "secret-secret" not in str(err.value)
    with pytest.raises(ConfigError, match="at least 16"):
        parse_keys("read:short", "test")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"write:{WRITE_KEY}\n")
    monkeypatch.delenv("PIE_SERVE_KEYS", raising=False)
    assert load_keys(str(keys_file)).scope_of(WRITE_KEY) == "write" and not load_keys(None)


def test_non_loopback_bind_without_keys_is_refused(monkeypatch, capsys, built_index):
    """Through the real CLI; uvicorn.run is replaced so nothing can bind if the check were missing."""
    import uvicorn

    from pie_retriever.cli import main

    def must_not_run(*a, **k):
        raise AssertionError("the server was started on a non-loopback address without keys")

    monkeypatch.setattr(uvicorn, "run", must_not_run)
    monkeypatch.delenv("PIE_SERVE_KEYS", raising=False)
    monkeypatch.delenv("PIE_SERVE_KEYS_FILE", raising=False)
    assert main(["serve", str(built_index), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "Refusing to bind 0.0.0.0 without API keys" in err and "127.0.0.1" in err


def test_keys_are_not_logged_and_cors_is_off(server):
    with server.client("wrong-key-0123456789abcdef") as c:
        assert c.get("/v1/indexes").status_code == 401
    with server.client(WRITE_KEY) as c:
        assert c.get("/v1/indexes").status_code == 200
    pre = httpx.options(f"{server.url}/v1/indexes/pool/search",
                        headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    log = server.output()
    for secret in (READ_KEY, WRITE_KEY, "wrong-key-0123456789abcdef"):
        assert secret not in log


def test_read_only_replica_refuses_writes_and_leaves_the_folder_alone(index_copy):
    from service_harness import Server

    from pie_retriever.service.durability import wal_path

    wal_path(index_copy).write_bytes(b'{"op":"delete","ids":["d-write-poem-03"]}\n{"op":"add","demos":[{"id":"torn"')
    before = {p.name: p.stat().st_mtime_ns for p in index_copy.iterdir()}
    wal_before = wal_path(index_copy).read_bytes()
    server = Server([index_copy], "--read-only").start()
    try:
        with server.client(WRITE_KEY) as c:
            r = c.post("/v1/indexes/pool/demonstrations", json={"demonstrations": [{"instruction": "Write a haiku"}]})
            assert r.status_code == 403 and "read replica" in r.json()["detail"]
            hits = c.post("/v1/indexes/pool/search", json={"query": "Can you write a limerick about a lazy cat?", "k": 3}).json()["hits"]
            assert "d-write-poem-03" not in {h["id"] for h in hits}  # the log was replayed (in memory only)
    finally:
        server.stop()
    assert {p.name: p.stat().st_mtime_ns for p in index_copy.iterdir()} == before
    assert wal_path(index_copy).read_bytes() == wal_before  # not even the torn tail was cut
