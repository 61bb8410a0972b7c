"""ServerEncoder against a tiny local fake of an OpenAI-compatible server (fast; the real vLLM server is in
tests/integrations/test_server_real.py): batching, client-side prompt, fingerprint, save/load, and the error
paths (server down, HTTP 500, timeout, wrong model name), each with its message pinned."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from fake_openai_server import DIM, FakeServer, closed_port_url, hash_vector

from pie_retriever.encoders.base import ENCODER_TYPES, encoder_from_config
from pie_retriever.encoders.prompts import PIE_PROMPT, apply_prompt
from pie_retriever.encoders.server import ServerEncoder
from pie_retriever.errors import ConfigError, EncoderMismatchError, IndexLoadError, ServerError, UnknownModelError

FAST = {"max_retries": 2, "backoff": 0.01, "timeout": 5.0}


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_registered_as_encoder_type():
    assert ENCODER_TYPES["server"] == "pie_retriever.encoders.server:ServerEncoder"


def test_encode_batches_orders_and_normalises(server):
    enc = ServerEncoder("fake-model", server.base_url, batch_size=2, **FAST)
    assert enc.dim == DIM
    texts = [f"instruction number {i}" for i in range(5)]
    server.requests.clear()
    vecs = enc.encode(texts)
    assert vecs.shape == (5, DIM) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-6)
    # the fake answers each batch in reverse order: rows are put back by their index
    for text, row in zip(texts, vecs):
        np.testing.assert_allclose(row, _unit(hash_vector(text)), rtol=1e-5, atol=1e-6)
    bodies = server.posts("/v1/embeddings")
    assert [len(b["input"]) for b in bodies] == [2, 2, 1]  # batch_size texts per request
    assert all(b["model"] == "fake-model" and b["truncate_prompt_tokens"] == -1 for b in bodies)
    assert enc.encode([]).shape == (0, DIM)


def test_prompt_is_applied_on_the_client(server):
    enc = ServerEncoder("fake-model", server.base_url, prompt="pie", **FAST)
    server.requests.clear()
    enc.encode(["Write a poem about the sea"])
    sent = server.posts("/v1/embeddings")[0]["input"][0]
    assert sent == apply_prompt(PIE_PROMPT, "Write a poem about the sea")
    plain = ServerEncoder("fake-model", server.base_url, prompt="plain", truncate_prompt_tokens=None, **FAST)
    server.requests.clear()
    plain.encode_queries(["Write a poem"])
    assert server.posts("/v1/embeddings")[0] == {"model": "fake-model", "input": ["Write a poem"], "encoding_format": "float"}


def test_fingerprint_follows_model_prompt_and_server_report(server):
    a = ServerEncoder("fake-model", server.base_url, **FAST)
    assert a.fingerprint == ServerEncoder("fake-model", server.base_url, **FAST).fingerprint
    assert a.fingerprint != ServerEncoder("fake-model", server.base_url, prompt="pie", **FAST).fingerprint
    assert a.fingerprint != ServerEncoder("fake-model", server.base_url, pooling="cls", **FAST).fingerprint
    server.max_model_len = 256  # what the server reports about the model is part of it
    assert a.fingerprint != ServerEncoder("fake-model", server.base_url, **FAST).fingerprint
    other = FakeServer(model="other-model")
    try:
        assert a.fingerprint != ServerEncoder("other-model", other.base_url, **FAST).fingerprint
    finally:
        other.close()


def test_config_round_trip_and_index_save_load(server, small_pool, tmp_path):
    from pie_retriever import PIERetriever

    enc = ServerEncoder("fake-model", server.base_url, prompt="pie", batch_size=4, **FAST)
    cfg = enc.config()
    assert cfg["type"] == "server" and "api_key" not in cfg
    again = encoder_from_config(cfg)
    assert isinstance(again, ServerEncoder) and again.fingerprint == enc.fingerprint and again.batch_size == 4
    retriever = PIERetriever.from_demonstrations(small_pool, enc)
    hits = retriever.retrieve("Write a poem about the ocean.", k=2)
    retriever.save(tmp_path / "idx")
    with pytest.raises(IndexLoadError, match="allow_remote"):  # the folder alone does not choose where queries go
        PIERetriever.load(tmp_path / "idx")
    loaded = PIERetriever.load(tmp_path / "idx", allow_remote=[server.base_url])  # rebuilds the ServerEncoder from the manifest
    assert isinstance(loaded.encoder, ServerEncoder)
    assert [h.id for h in loaded.retrieve("Write a poem about the ocean.", k=2)] == [h.id for h in hits]
    # an index built with one served model does not load with another
    server.model = "fake-model-v2"
    with pytest.raises(EncoderMismatchError, match="Encoder mismatch"):
        PIERetriever.load(tmp_path / "idx", encoder=ServerEncoder("fake-model-v2", server.base_url, prompt="pie", **FAST))


def test_openai_client_path(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="test-key")
    enc = ServerEncoder("fake-model", client=client, **FAST)
    direct = ServerEncoder("fake-model", server.base_url, **FAST)
    np.testing.assert_allclose(enc.encode(["a b", "c"]), direct.encode(["a b", "c"]))
    assert enc.fingerprint == direct.fingerprint


# ------------------------------------------------------------------------------------------------------
# Error paths: each a clear message (what happened, where, how to fix)
# ------------------------------------------------------------------------------------------------------
def test_server_down():
    url = closed_port_url()
    started = time.perf_counter()
    with pytest.raises(ServerError, match=r"Cannot reach the server at http://127\.0\.0\.1:\d+/v1 .*Connection refused; 3 attempts") as info:
        ServerEncoder("fake-model", url, **FAST)
    assert "python -m vllm.entrypoints.openai.api_server" in str(info.value)
    assert isinstance(info.value, ConnectionError) and info.value.status_code is None
    assert time.perf_counter() - started < 5


def test_http_500_is_retried_then_reported(server, caplog):
    enc = ServerEncoder("fake-model", server.base_url, **FAST)
    server.fail_status, server.fail_times = 500, 2  # two failures, then an answer: the retries absorb them
    with caplog.at_level(logging.WARNING, logger="pie_retriever.encoders.http"):
        assert enc.encode(["hello"]).shape == (1, DIM)
    assert sum("HTTP 500; retry" in r.getMessage() for r in caplog.records) == 2
    server.fail_times = -1  # always failing: the error names the status, the server's message and the attempts
    with pytest.raises(ServerError, match=r"answered HTTP 500 to POST .*/v1/embeddings \(3 attempts .*injected failure 500.*see its log") as info:
        enc.encode(["hello"])
    assert info.value.status_code == 500


def test_timeout(server):
    enc = ServerEncoder("fake-model", server.base_url, **{**FAST, "timeout": 0.3, "max_retries": 1})
    server.delay = 1.0
    with pytest.raises(ServerError, match=r"did not answer POST .*/v1/embeddings within 0\.3 s \(2 attempts.*Raise timeout="):
        enc.encode(["slow"])


def test_wrong_model_name(server):
    with pytest.raises(UnknownModelError, match=r"does not serve model 'nope'; it serves: 'fake-model'\. Pass one of these as model="):
        ServerEncoder("nope", server.base_url, **FAST)
    # the served model changes after construction: the 404 names the served models too
    enc = ServerEncoder("fake-model", server.base_url, **FAST)
    server.model = "renamed"
    with pytest.raises(UnknownModelError, match=r"HTTP 404 .*The model `fake-model` does not exist.*Served models: renamed"):
        enc.encode(["x"])


def test_bad_options(server):
    with pytest.raises(ConfigError, match="needs base_url"):
        ServerEncoder("fake-model")
    with pytest.raises(ConfigError, match="base_url must start with http"):
        ServerEncoder("fake-model", "127.0.0.1:8000")
    with pytest.raises(ConfigError, match="truncate_prompt_tokens must be"):
        ServerEncoder("fake-model", server.base_url, truncate_prompt_tokens=0)
    with pytest.raises(ConfigError, match="timeout must be a number of seconds > 0"):
        ServerEncoder("fake-model", server.base_url, timeout=0)
    with pytest.raises(TypeError, match="single string"):
        ServerEncoder("fake-model", server.base_url, **FAST).encode("one string")
