"""An index folder is untrusted input (issue 25, items 1–2): nothing it names runs, is contacted or gets a key.

Each hostile folder is built here from a valid saved index by editing its manifest (which no hash covers):
a vLLM encoder with ``trust_remote_code`` and model code in a sub-folder, a server encoder pointing at a
listener that records what it receives, Milvus URIs elsewhere, and knobs far out of bounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import IndexLoadError
from pie_retriever.retrieval.trust import BOUNDS, LoadPolicy

POOL = [{"id": f"d{i}", "instruction": f"write a note about topic {i}"} for i in range(6)]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    folder = tmp_path / "idx.pie"
    PIERetriever.from_demonstrations(POOL, HashingEncoder(dim=16)).save(folder)
    return folder


def _set_encoder(folder: Path, **config: Any) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    m["encoder"] = {**config, "fingerprint": m["encoder"]["fingerprint"]}
    (folder / "manifest.json").write_text(json.dumps(m))


class Listener:
    """Records every request (path and headers) it gets, and answers like an embeddings server would."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _record(self) -> None:
                outer.seen.append((self.path, dict(self.headers)))
                payload = b'{"data": []}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _record

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _code_model(folder: Path, marker: Path) -> Path:
    """A model sub-folder whose config asks transformers to import its own code (which would create ``marker``)."""
    m = folder / "m"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig",
                                                                                 "AutoModel": "evil.EvilModel"}}))
    (m / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return m


def test_vllm_trust_remote_code_in_a_manifest_is_refused_and_runs_nothing(index, tmp_path):
    marker = tmp_path / "marker"
    model = _code_model(index, marker)
    _set_encoder(index, type="vllm", model=str(model), llm_kwargs={"trust_remote_code": True})
    with pytest.raises(IndexLoadError, match="trust_remote_code"):
        PIERetriever.load(index)
    # even with the caller's consent, a model inside the index folder is not covered by the manifest's hashes
    with pytest.raises(IndexLoadError, match="lies inside the index folder"):
        PIERetriever.load(index, trust_remote_code=True)
    # the same through the command line, with a relative path resolved against the working folder
    _set_encoder(index, type="vllm", model="idx.pie/m", llm_kwargs={"trust_remote_code": True})
    proc = subprocess.run([sys.executable, "-m", "pie_retriever.cli", "search", "idx.pie", "q"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "trust_remote_code" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_engine_options_beyond_the_safe_list_need_the_callers_consent(index, tmp_path):
    _set_encoder(index, type="vllm", model=str(tmp_path / "elsewhere"), llm_kwargs={"tokenizer": "/tmp/x", "dtype": "float32"})
    with pytest.raises(IndexLoadError, match=r"engine options \['tokenizer'\]"):
        PIERetriever.load(index)


def test_a_manifest_server_url_gets_no_query_and_no_key(index, monkeypatch):
    listener = Listener()
    try:
        monkeypatch.setenv("PIE_RETRIEVER_API_KEY", "secret-key")
        monkeypatch.delenv("PIE_RETRIEVER_BASE_URL", raising=False)
        monkeypatch.delenv("PIE_ALLOW_REMOTE", raising=False)
        _set_encoder(index, type="server", model="m", base_url=listener.url)
        with pytest.raises(IndexLoadError, match="allow_remote"):
            PIERetriever.load(index)
        proc = subprocess.run([sys.executable, "-m", "pie_retriever.cli", "search", str(index), "q"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 1 and "--allow-remote" in proc.stderr
        assert listener.seen == []  # nothing was contacted, so no key and no query left
        # the caller allows it: now (and only now) the listener is asked, with the key
        with pytest.raises(Exception):  # noqa: B017 - the listener is not a real embeddings server
            PIERetriever.load(index, allow_remote=[listener.url])
        assert listener.seen and listener.seen[0][1].get("Authorization") == "Bearer secret-key"
    finally:
        listener.close()


def test_the_callers_environment_url_wins_over_the_manifests(index, monkeypatch):
    listener = Listener()
    try:
        _set_encoder(index, type="server", model="m", base_url="http://203.0.113.9:8000/v1")  # never contacted
        monkeypatch.setenv("PIE_RETRIEVER_BASE_URL", listener.url)
        with pytest.raises(Exception):  # noqa: B017 - the listener is not a real embeddings server
            PIERetriever.load(index)
        assert listener.seen  # it went to the caller's server, not the manifest's
    finally:
        listener.close()


@pytest.mark.parametrize(("uri", "words"), [
    ("http://203.0.113.9:19530", "Milvus server"),
    ("/var/tmp/someone-elses.db", "outside the folder"),
])
def test_milvus_uris_named_by_a_folder_need_consent(index, uri, words):
    m = json.loads((index / "manifest.json").read_text())
    m["index"] = {"kind": "milvus", "options": {"uri": uri, "collection": "c"}}
    m["files"] = {k: v for k, v in m["files"].items() if k != "index.faiss"}  # a milvus index has no files of its own
    (index / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexLoadError, match=words):
        PIERetriever.load(index)


@pytest.mark.parametrize(("key", "value"), [("threads", 4096), ("timeout", 10**6), ("backoff", 10**6),
                                            ("max_retries", 10**7), ("batch_size", 10**9), ("max_length", -5)])
def test_manifest_knobs_outside_their_bounds_are_refused(index, key, value):
    kind = "server" if key in ("timeout", "backoff", "max_retries") else "transformer"
    _set_encoder(index, type=kind, model="pie-minilm-lc", base_url="http://127.0.0.1:9/v1", **{key: value})
    with pytest.raises(IndexLoadError, match=f"{key}={value}.*outside the allowed range"):
        PIERetriever.load(index, allow_remote=True)
    assert key in BOUNDS


def test_policy_from_the_environment_and_explicit_arguments(monkeypatch):
    monkeypatch.setenv("PIE_ALLOW_REMOTE", "http://a/v1, http://b/v1")
    monkeypatch.setenv("PIE_TRUST_REMOTE_CODE", "1")
    p = LoadPolicy.resolve()
    assert p.trust_remote_code and p.allows_url("http://b/v1/") and not p.allows_url("http://c/v1")
    assert not LoadPolicy.resolve(False, False).allows_url("http://a/v1")  # an argument wins over the environment
    monkeypatch.setenv("PIE_ALLOW_REMOTE", "all")
    assert LoadPolicy.resolve().allows_url("http://anything")
    with pytest.raises(TypeError):
        LoadPolicy.resolve(trust_remote_code="yes")


def test_a_plain_local_index_loads_as_before(index):
    assert len(PIERetriever.load(index)) == len(POOL)
