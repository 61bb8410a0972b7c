"""Benchmark speed section: synthetic pools, perturbed vectors, the fresh-process memory probe, encoding paths, a tiny run."""

from __future__ import annotations

import numpy as np
import pytest

from pie_retriever.evaluation.bench import flops, memory, speed


# -- speed helpers ---------------------------------------------------------------------------------
def test_synthetic_texts_are_distinct():
    out = speed.synthetic_texts(["a b", "c d", "a b"], 7)
    assert len(out) == 7 == len(set(out))
    assert out[:2] == ["a b", "c d"]


def test_perturbed_copies_are_unit_and_close():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = speed.perturbed_copies(v, 12)
    assert out.shape == (12, 32) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.allclose(out[:5], v, atol=1e-6)
    assert (np.sum(out[5:10] * v, axis=1) > 0.99).all()


def test_memory_probe_in_fresh_process():
    texts = [f"Instruction number {i} about something." for i in range(2000)]
    vecs = speed.perturbed_copies(np.eye(8, dtype=np.float32), 2000)
    pie = memory.memory_probe("pie", texts, vecs)
    bm = memory.memory_probe("bm25", texts)
    assert pie["retained"] > 2000 * 8 * 4  # at least the vectors
    assert bm["retained"] > 0


@pytest.fixture
def one_thread():
    """Small forward passes on a loaded 2-core machine are several times faster on one torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_naive_encode_agrees_with_core(minilm, one_thread):
    texts = ["Write a poem about cats.", "Summarize the following long article about the economy of France in two sentences.", "Hi"]
    core = minilm.encode(texts, prompt="pie")
    naive = flops.naive_encode(minilm, texts, prompt="pie", batch_size=2)
    assert (np.sum(core * naive, axis=1) > 0.995).all()


def test_run_speed_tiny(minilm, one_thread):
    base = [f"Write a short poem about topic {i}." for i in range(60)]
    out = speed.run_speed(minilm, base, ["Summarize the text.", "Translate this."], sizes=(20, 60, 200), encode_limit=60,
                          n_single=3, batch_queries=4, compare_texts=8, compare_rounds=1, matmul_seconds=0.05,
                          memory_sizes=(200,), show_progress=False)
    rows = {r["n"]: r for r in out["per_size"]}
    assert rows[60]["pie"]["encode_measured"] and not rows[200]["pie"]["encode_measured"]
    assert rows[200]["pie"]["rss_bytes_per_demo"] > 0 and rows[20]["pie"]["rss_bytes_per_demo"] is None
    assert rows[200]["pie"]["index_file_bytes_per_demo"] == pytest.approx(384 * 2 + 8, rel=0.05)  # fp16 vectors, the default
    assert out["encode_paths"]["speedup_core_vs_naive"] > 0
    assert 0 < out["encoder_flops"]["core_fraction_of_matmul"]
    assert out["encode_paths"]["cosine_core_vs_naive"]["min"] > 0.99


def test_backend_rows_idle_and_loaded(fake_encoder, benchmarks_module):
    from pie_retriever.evaluation.bench.speed_backends import run_backends

    texts = [f"Write a note about subject number {i}." for i in range(300)]
    vectors = speed.l2_normalize(np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32))  # no ties
    out = run_backends(fake_encoder, texts, vectors, texts[:5], texts[:16], backends=("torch",), hog=1)
    assert [(r["backend"], r["vectors"]) for r in out["rows"]] == [("torch", "fp32"), ("torch", "fp16"), ("torch", "int8")]
    recall = {r["vectors"]: r["recall_at_4"] for r in out["rows"]}
    assert recall["fp32"] == 1.0 and recall["fp16"] == 1.0 and recall["int8"] >= 0.8
    assert all(r["single_loaded"]["n"] == 5 and r["single_idle"]["p50_ms"] > 0 for r in out["rows"])
    assert out["hog_processes"] == 1 and out["load_idle"] is not None
    md = "\n".join(benchmarks_module("render")._speed_backends_md({"backends": out}))
    assert "| torch | fp16 | 1.000 |" in md and "loaded" in md
