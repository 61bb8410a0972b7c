"""Fixtures of the service tests: the bundled pool indexed once with the ONNX encoder, and a server per module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from service_harness import build_pool_index, module_server


@pytest.fixture(scope="session")
def built_index(tmp_path_factory) -> Path:
    """The bundled pool (249 demonstrations) indexed with the ONNX encoder, saved once per session."""
    return build_pool_index(tmp_path_factory.mktemp("svc-built") / "pool")


@pytest.fixture
def index_copy(built_index, tmp_path) -> Path:
    """A private copy of the index folder (tests that write or reload must not share one)."""
    folder = tmp_path / "pool"
    shutil.copytree(built_index, folder)
    return folder


@pytest.fixture(scope="module")
def server(built_index, tmp_path_factory):
    """One server per test module over a module-private copy of the index."""
    yield from module_server(built_index, tmp_path_factory.mktemp("svc-module") / "pool")
