"""The server encoder checks every reply (issue 25, item 4): each malformed reply is a ServerError naming the fault.

A raw HTTP server on 127.0.0.1 answers ``/v1/models`` properly and ``/v1/embeddings`` with what the test sets:
a JSON body, a body dripped a byte at a time, a declared or actual size over the cap, or a gzip bomb.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.base import Encoder
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.encoders.http import ServerClient
from pie_retriever.encoders.server import ServerEncoder
from pie_retriever.errors import ConfigError, EncoderMismatchError, ServerError

DIM = 8
FAST = {"timeout": 5.0, "max_retries": 0, "backoff": 0.0}


def _vec(i: int) -> list[float]:
    return [float(i + 1), *([0.5] * (DIM - 1))]


class RawServer:
    """``embeddings(body, handler)`` writes the whole reply of each POST /v1/embeddings."""

    def __init__(self) -> None:
        self.embeddings: Callable[[dict, BaseHTTPRequestHandler], None] = self.good
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                send_json(self, {"object": "list", "data": [{"id": "m", "object": "model", "root": None, "max_model_len": 64}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                try:
                    outer.embeddings(body, self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @staticmethod
    def good(body: dict, h: BaseHTTPRequestHandler) -> None:
        send_json(h, {"data": [{"index": i, "embedding": _vec(i)} for i in range(len(body["input"]))]})

    def rows(self, make: Callable[[int], list[dict]]) -> None:
        self.embeddings = lambda body, h: send_json(h, {"data": make(len(body["input"]))})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(h: BaseHTTPRequestHandler, data: Any, raw: bytes | None = None) -> None:
    payload = raw if raw is not None else json.dumps(data).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    h.wfile.write(payload)


@pytest.fixture
def raw_server():
    s = RawServer()
    yield s
    s.close()


def _encoder(server: RawServer, **kw: Any) -> ServerEncoder:
    return ServerEncoder("m", server.url, **{**FAST, **kw})


MALFORMED = {
    # name: (rows for n inputs, words the error must contain)
    "string indexes": (lambda n: [{"index": str(i), "embedding": _vec(i)} for i in range(n)], "not an integer"),
    "missing index": (lambda n: [{"embedding": _vec(i)} for i in range(n)], "not an integer"),
    "duplicate index": (lambda n: [{"index": 0, "embedding": _vec(i)} for i in range(n)], "both have index 0"),
    "index out of range": (lambda n: [{"index": i + 1, "embedding": _vec(i)} for i in range(n)], "outside [0,"),
    "bool index": (lambda n: [{"index": True, "embedding": _vec(i)} for i in range(n)], "not an integer"),
    "too few rows": (lambda n: [{"index": 0, "embedding": _vec(0)}][: max(n - 1, 0)] or [], "embeddings for"),
    "zero vector": (lambda n: [{"index": i, "embedding": [0.0] * DIM} for i in range(n)], "all zeros"),
    "null in vector": (lambda n: [{"index": i, "embedding": [None] * DIM} for i in range(n)], "not a number"),
    "string in vector": (lambda n: [{"index": i, "embedding": ["1"] * DIM} for i in range(n)], "not a number"),
    "beyond float32": (lambda n: [{"index": i, "embedding": [1e39] * DIM} for i in range(n)], "beyond float32"),
    "ragged lengths": (lambda n: [{"index": i, "embedding": _vec(i)[: DIM - i]} for i in range(n)], "different lengths"),
    "embedding not a list": (lambda n: [{"index": i, "embedding": "0.1,0.2"} for i in range(n)], "not a non-empty list"),
    "row not an object": (lambda n: [[0.1] * DIM for _ in range(n)], "not an object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_embeddings_reply_is_a_server_error_naming_the_fault(raw_server, case):
    enc = _encoder(raw_server)  # connects with good replies
    make, words = MALFORMED[case]
    raw_server.rows(make)
    with pytest.raises(ServerError, match="malformed embeddings reply") as info:
        enc.encode(["a", "b", "c"])
    assert words in str(info.value)


@pytest.mark.parametrize("body", [[1, 2], {"data": "x"}, {"nodata": []}, "text"])
def test_reply_shapes_that_are_not_an_embeddings_list(raw_server, body):
    enc = _encoder(raw_server)
    raw_server.embeddings = lambda b, h: send_json(h, body)
    with pytest.raises(ServerError, match="malformed embeddings reply"):
        enc.encode(["a"])


def test_nan_and_infinity_tokens_in_json(raw_server):
    enc = _encoder(raw_server)
    raw = b'{"data": [{"index": 0, "embedding": [NaN, 1, 1, 1, 1, 1, 1, 1]}]}'
    raw_server.embeddings = lambda b, h: send_json(h, None, raw)
    with pytest.raises(ServerError, match="NaN, infinity"):
        enc.encode(["a"])


def test_rows_out_of_order_are_put_back_in_input_order(raw_server):
    enc = _encoder(raw_server)
    raw_server.rows(lambda n: [{"index": i, "embedding": _vec(i)} for i in reversed(range(n))])
    got = enc.encode(["a", "b", "c"])
    expected = np.array([_vec(i) for i in range(3)], dtype=np.float32)
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    # with vectors of the texts, every added demonstration is found by its own text: rows follow the inputs
    def text_vec(text: str) -> list[float]:
        return np.random.default_rng(sum(text.encode())).normal(size=DIM).tolist()

    raw_server.embeddings = lambda body, h: send_json(h, {"data": [
        {"index": i, "embedding": text_vec(t)} for i, t in reversed(list(enumerate(body["input"])))]})
    texts = [f"text number {i}" for i in range(20)]
    r = PIERetriever.from_demonstrations(texts, enc, content_scorer=None, content_weight=0)
    assert [r.retrieve(t, k=1)[0].demonstration.instruction for t in texts] == texts


def test_a_dripping_reply_cannot_hold_a_call_past_the_timeout(raw_server):
    enc = _encoder(raw_server)
    payload = json.dumps({"data": [{"index": 0, "embedding": _vec(0)}]}).encode()

    def drip(body: dict, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        for byte in payload:  # one byte every 0.2 s: each read is quick, the whole reply takes ~20 s
            h.wfile.write(bytes([byte]))
            h.wfile.flush()
            time.sleep(0.2)

    raw_server.embeddings = drip
    enc.client.timeout = 1.0
    started = time.monotonic()
    with pytest.raises(ServerError, match="did not answer"):
        enc.encode(["a"])
    assert time.monotonic() - started < 5.0  # bounded by the 1 s deadline (plus one 0.2 s read), not the ~20 s drip


def test_a_reply_over_the_size_cap_is_refused_declared_or_decoded(raw_server):
    enc = _encoder(raw_server)
    enc.client.max_reply_bytes = 64 * 1024
    big = json.dumps({"data": [{"index": 0, "embedding": [0.1] * 20000}]}).encode()  # ~100 KB
    raw_server.embeddings = lambda b, h: send_json(h, None, big)
    with pytest.raises(ServerError, match="declares"):
        enc.encode(["a"])

    bomb = gzip.compress(b'{"data": [' + b" " * (8 * 1024 * 1024) + b"]}")  # 8 MB of JSON, ~8 KB on the wire

    def gzip_bomb(body: dict, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(bomb)))
        h.end_headers()
        h.wfile.write(bomb)

    assert len(bomb) < 64 * 1024
    raw_server.embeddings = gzip_bomb
    with pytest.raises(ServerError, match="once decoded"):
        enc.encode(["a"])


@pytest.mark.parametrize(("option", "value", "words"), [
    ("max_retries", 10**7, "at most 20"), ("timeout", 10**6, "<= 600"), ("backoff", 10**6, "<= 60"),
    ("timeout", math.nan, "number of seconds"), ("backoff", -1, "number of seconds"),
])
def test_client_knobs_are_bounded(option, value, words):
    with pytest.raises(ConfigError, match=words):
        ServerClient("http://127.0.0.1:9/v1", **{option: value})


class _NanEncoder(HashingEncoder):
    def encode(self, texts, *, prompt=None, show_progress=None):
        out = super().encode(texts, prompt=prompt, show_progress=show_progress)
        if prompt is not None and "bad" in texts[0]:
            out[:, 0] = np.nan
        return out

    def encode_queries(self, texts, *, show_progress=None):
        out = HashingEncoder.encode_queries(self, texts, show_progress=show_progress)
        return np.where(np.array(["bad" in t for t in texts])[:, None], np.nan, out)


def test_a_nan_query_vector_is_an_error_not_an_empty_result():
    assert issubclass(_NanEncoder, Encoder)
    r = PIERetriever.from_demonstrations(["write a poem", "sum numbers"], _NanEncoder(dim=16), content_scorer=None, content_weight=0)
    assert r.retrieve("write a poem", k=1)
    with pytest.raises(EncoderMismatchError, match="NaN, infinite or all-zero vector"):
        r.retrieve("bad query", k=1)
