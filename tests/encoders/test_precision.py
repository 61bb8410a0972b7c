"""The precision policy: fp32 by default on every CPU, ``$PIE_PRECISION`` forces either branch, and a text's vector
agrees with itself alone or in any batch within ``PRECISION_TOLERANCE`` (the Ray half of this group is in
tests/retrieval/test_distributed.py). Runs the bf16 branch on a CPU without native bf16 too (torch emulates it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.transformer import PRECISION_TOLERANCE, TransformerEncoder, resolve_precision
from pie_retriever.errors import ConfigError
from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

pytestmark = pytest.mark.precision
PRECISIONS = ["fp32", "bf16"]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [d.text(("instruction", "input")) for d in load_bundled_pool()[:96]]


def test_the_default_is_fp32_whatever_the_cpu(monkeypatch):
    monkeypatch.delenv("PIE_PRECISION", raising=False)
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") == "fp32"  # what indexes saved before the policy recorded
    monkeypatch.setenv("PIE_PRECISION", "bf16")
    assert resolve_precision("fp32") == resolve_precision("auto") == "bf16"
    monkeypatch.setenv("PIE_PRECISION", "fp16")
    with pytest.raises(ConfigError, match=r"\$PIE_PRECISION 'fp16'; choose one of: fp32, bf16"):
        resolve_precision("fp32")
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("int4")


def test_default_encoder_runs_fp32(minilm, monkeypatch):
    monkeypatch.delenv("PIE_PRECISION", raising=False)
    assert minilm.precision == "fp32" and not minilm.use_bf16 and not minilm.bf16_for(1000)
    assert minilm.config()["precision"] == "fp32"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_forced_precision_one_vector_per_text(precision, texts, monkeypatch):
    """Alone, in the whole batch, in another batch size and in another order: the same vector within tolerance."""
    monkeypatch.setenv("PIE_PRECISION", precision)
    enc = TransformerEncoder("minilm", precision="fp32" if precision == "bf16" else "bf16")  # the switch wins
    assert enc.precision == precision and enc.use_bf16 == (precision == "bf16")
    assert enc.config()["precision"] == precision  # the manifest records what ran
    batch = enc.encode(texts)
    alone = np.stack([enc.encode([t])[0] for t in texts[:12]])
    small = TransformerEncoder("minilm", batch_size=7).encode(texts)
    rev = enc.encode(texts[::-1])[::-1]
    tol = PRECISION_TOLERANCE[precision]
    for other in (alone, small[:12], rev[:12]):
        assert np.abs(other - batch[: len(other)]).max() <= tol
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    if precision == "fp32":  # measured 2.2e-7 (docs/speed.md): far inside the stated tolerance
        assert np.abs(alone - batch[:12]).max() <= 1e-6


def test_bf16_agrees_with_fp32(texts, monkeypatch):
    monkeypatch.delenv("PIE_PRECISION", raising=False)
    fp32 = TransformerEncoder("minilm").encode(texts)
    bf16 = TransformerEncoder("minilm", precision="bf16").encode(texts)
    cos = np.sum(fp32 * bf16, axis=1)
    assert cos.min() >= 0.999 and np.abs(fp32 - bf16).max() <= PRECISION_TOLERANCE["bf16"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_index_round_trip_under_each_precision(precision, tmp_path, monkeypatch):
    """Built under a precision, saved, loaded without the switch: the loaded encoder runs the recorded precision and
    answers with the same ids as before the save; retrieve and retrieve_batch agree."""
    monkeypatch.setenv("PIE_PRECISION", precision)
    r = PIERetriever.from_demonstrations(load_bundled_pool(), TransformerEncoder("minilm"))
    queries = [q.instruction for q in load_bundled_queries()[:30]]
    before = [[h.id for h in hits] for hits in r.retrieve_batch(queries, k=4)]
    r.save(tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["encoder"]["precision"] == precision
    monkeypatch.delenv("PIE_PRECISION")
    loaded = PIERetriever.load(tmp_path / "idx")
    assert loaded.encoder.precision == precision
    assert [[h.id for h in hits] for hits in loaded.retrieve_batch(queries, k=4)] == before
    singles = [[h.id for h in loaded.retrieve(q, k=4)] for q in queries]
    if precision == "fp32":
        assert singles == before
    else:  # a single query runs fp32 under bf16 (fp32_max_texts): ties may swap, the sets hardly move
        assert np.mean([set(a) == set(b) for a, b in zip(singles, before)]) >= 0.9
