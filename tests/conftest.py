from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def ieb_dir() -> Path:
    return Path(os.environ.get("PIE_IEB_DIR", REPO.parent / "shared" / "ieb"))


@pytest.fixture(scope="session")
def ieb() -> Path:
    path = ieb_dir()
    if not (path / "eft_test.json").is_file():
        pytest.skip(f"IEB data not found at {path}; set PIE_IEB_DIR")
    return path


@pytest.fixture
def fake_encoder():
    from pie_retriever.encoders.hashing import HashingEncoder

    return HashingEncoder(dim=64)


@pytest.fixture(scope="session")
def _minilm_session():
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder("minilm")


@pytest.fixture
def minilm(_minilm_session):
    """The real packaged all-MiniLM-L6-v2 (loaded once per session, deep-copied per test)."""
    return copy.deepcopy(_minilm_session)


SMALL_POOL = [
    {"id": "p1", "instruction": "Write a poem about the ocean.", "output": "Waves...", "metadata": {"task": "write|poem", "topic": "ocean"}},
    {"id": "p2", "instruction": "Compose a haiku about taxes.", "output": "Forms...", "metadata": {"task": "write|poem", "topic": "taxes"}},
    {"id": "s1", "instruction": "Summarize this article about the ocean.", "input": "The ocean covers...", "output": "Oceans are big.", "metadata": {"task": "summarize|article", "topic": "ocean"}},
    {"id": "s2", "instruction": "Summarize the text about tax law.", "input": "Tax law is...", "output": "Taxes are complex.", "metadata": {"task": "summarize|article", "topic": "taxes"}},
    {"id": "t1", "instruction": "Translate this sentence about the ocean into French.", "input": "The ocean is blue.", "output": "L'océan est bleu.", "metadata": {"task": "translate|sentence", "topic": "ocean"}},
    {"id": "t2", "instruction": "Translate into German: taxes are due in April.", "output": "Steuern sind im April fällig.", "metadata": {"task": "translate|sentence", "topic": "taxes"}},
]


@pytest.fixture
def small_pool():
    return copy.deepcopy(SMALL_POOL)
