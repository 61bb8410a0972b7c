from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Indexes built with a torch model load with torch in the suite: the torch-free query path (an fp32 ONNX export built
# into the cache at the first load, ~20 s per model) is tested in tests/encoders/test_torch_free_load.py, which
# clears this for its own module; elsewhere it would rebuild exports in every fresh cache.
os.environ.setdefault("PIE_ENCODER_RUNTIME", "torch")

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


@pytest.fixture(scope="session")
def templated_p_at_4():
    """``p_at_4(model)``: task-match P@4 of a real model on the templated-prompt set (pool → queries), through the
    library's ranking and metrics; also checks the model's vectors are unit length and it has a fingerprint."""
    import numpy as np

    from pie_retriever.encoders.transformer import TransformerEncoder
    from pie_retriever.evaluation.bench.templated import templated_set
    from pie_retriever.evaluation.metrics import precision_at_k, relevance
    from pie_retriever.evaluation.rankers import rank_by_vectors

    pool, queries = templated_set()
    labels = np.array([d.metadata["task"] for d in pool], dtype=object)

    def p_at_4(model: str) -> float:
        enc = TransformerEncoder(model)
        assert enc.fingerprint
        pv, qv = enc.encode([d.instruction for d in pool]), enc.encode([q.instruction for q in queries])
        assert np.allclose(np.linalg.norm(pv, axis=1), 1.0, atol=1e-3)
        ranked = rank_by_vectors(pv, qv, 4)
        return precision_at_k(relevance([q.metadata["task"] for q in queries], labels[ranked]), 4)

    return p_at_4
