"""Fixtures of the service tests: the bundled pool indexed once with the ONNX encoder, and a server per module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from service_harness import MODEL, Server, pool_path


@pytest.fixture(scope="session")
def built_index(tmp_path_factory) -> Path:
    """The bundled pool (249 demonstrations) indexed with the ONNX encoder, saved once per session."""
    from pie_retriever import PIERetriever
    from pie_retriever.encoders import make_encoder
    from pie_retriever.pool.pools import load_pool

    folder = tmp_path_factory.mktemp("svc-built") / "pool"
    PIERetriever.from_demonstrations(load_pool(pool_path()), make_encoder(MODEL)).save(folder)
    return folder


@pytest.fixture
def index_copy(built_index, tmp_path) -> Path:
    """A private copy of the index folder (tests that write or reload must not share one)."""
    folder = tmp_path / "pool"
    shutil.copytree(built_index, folder)
    return folder


@pytest.fixture(scope="module")
def server(built_index, tmp_path_factory):
    """One server per test module over a module-private copy of the index."""
    folder = tmp_path_factory.mktemp("svc-module") / "pool"
    shutil.copytree(built_index, folder)
    srv = Server([folder]).start()
    yield srv
    srv.stop()
