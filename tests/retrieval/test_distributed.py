"""Distributed indexing on a real local Ray instance (2 CPUs): vectors equal to the single-process path's within the
encoder's measured precision tolerance (``PRECISION_TOLERANCE``: actors run other thread counts than the driver, and
under bf16 a component moves with them), and the same top-4 ids on the bundled queries."""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.encoders.transformer import PRECISION_TOLERANCE
from pie_retriever.pool.pools import bundled_pool_path, load_bundled_pool, load_bundled_queries
from pie_retriever.retrieval.distributed import build_with_ray, encode_with_ray, index_with_ray, plan_batches

pytestmark = pytest.mark.ray
#: fp16 storage (the faiss default) rounds each component to 11 significant bits: |x| < 1 moves by at most 2^-12.
FP16_ROUNDING = 2.0**-11


def assert_same_vectors(remote: PIERetriever, local: PIERetriever, atol: float) -> None:
    """Stored vectors within ``atol`` of each other, and the same top-4 ids for every bundled query."""
    labels = np.arange(len(local), dtype=np.int64)
    diff = np.abs(remote.index.reconstruct(labels) - local.index.reconstruct(labels)).max()
    assert diff <= atol, f"Ray vs local vectors differ by {diff:.2e} > {atol:.1e}"
    queries = [q.instruction for q in load_bundled_queries()[:40]]
    ids = lambda r: [[h.id for h in hits] for hits in r.retrieve_batch(queries, k=4)]
    assert ids(remote) == ids(local)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module. Every process it started (GCS, raylet, workers, actors: the
    driver's descendants while it runs) must be gone within 60 s of ``ray.shutdown()``."""
    import psutil
    import ray

    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")  # as pie_retriever.retrieval.distributed does
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    print(f"\nray.init(num_cpus=2): {time.perf_counter() - start:.2f}s")
    yield ray
    started = psutil.Process().children(recursive=True)
    ray.shutdown()
    _, alive = psutil.wait_procs(started, timeout=60)
    assert alive == [], f"ray.shutdown() left {[p.pid for p in alive]} running"


def test_actor_pool_startup_and_plain_batches(ray_local):
    enc = HashingEncoder(dim=32)
    texts = [f"write note number {i}" for i in range(600)]
    start = time.perf_counter()
    vectors = encode_with_ray(enc, texts, workers=2)
    print(f"Ray Data: 2 actors started and 600 texts hashed in {time.perf_counter() - start:.2f}s")
    assert (vectors == enc.encode_documents(texts)).all()
    assert [len(g) for g in plan_batches(enc, texts)] == [256, 256, 88]
    with pytest.raises(ValueError, match="workers"):
        encode_with_ray(enc, texts, workers=0)


@pytest.mark.precision
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_default_model_vectors_match_single_process(ray_local, tmp_path, precision, monkeypatch):
    """``index_with_ray`` on the bundled pool with the default model ≈ ``PIERetriever.from_demonstrations``, under
    each precision (forced by ``$PIE_PRECISION`` in the driver; the actors rebuild the encoder from its config,
    which records the precision that ran)."""
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.encoders.transformer import TransformerEncoder

    monkeypatch.setenv("PIE_PRECISION", precision)
    start = time.perf_counter()
    path = index_with_ray(bundled_pool_path(), tmp_path / "ray", workers=2, index="numpy")
    print(f"index_with_ray, bundled pool, default model, {precision}, 2 workers: {time.perf_counter() - start:.2f}s")
    encoder = TransformerEncoder(DEFAULT_MODEL)
    assert encoder.precision == precision
    start = time.perf_counter()
    local = PIERetriever.from_demonstrations(load_bundled_pool(), encoder, index="numpy")
    print(f"single process, same pool: {time.perf_counter() - start:.2f}s")
    remote = PIERetriever.load(path, encoder=encoder)
    assert [d.id for d in remote.demonstrations] == [d.id for d in local.demonstrations]
    assert_same_vectors(remote, local, PRECISION_TOLERANCE[precision])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["encoder"]["fingerprint"] == encoder.fingerprint and manifest["count"] == len(local)
    assert manifest["encoder"]["precision"] == precision


def test_build_with_ray_into_milvus_with_dedupe(ray_local, tmp_path):
    from pie_retriever.index.milvus_index import close_local_server

    pool = [{"id": f"d{i}", "instruction": f"write a note about topic {i % 7}", "metadata": {"task": f"t{i % 3}"}}
            for i in range(40)]
    enc = HashingEncoder(dim=32)
    uri = str(tmp_path / "pie.db")
    try:
        remote = build_with_ray(pool, enc, workers=2, index="milvus", index_options={"uri": uri, "collection": "pool"}, dedupe=True)
        local = PIERetriever.from_demonstrations(pool, enc, index="numpy", dedupe=True)
        assert len(remote) == len(local) == len(remote.index) == 7
        assert remote.encoder is enc
        labels = np.arange(7, dtype=np.int64)
        # exact: the hashing encoder's vectors do not depend on the batch or the process, and both stores keep fp32
        assert np.array_equal(remote.index.reconstruct(labels), local.index.reconstruct(labels))
        query = "write a note about topic 3"
        assert [h.id for h in remote.retrieve(query, k=3, filter={"task": "t0"})] == \
            [h.id for h in local.retrieve(query, k=3, filter={"task": "t0"})]
    finally:
        close_local_server(uri)


def test_cli_engine_ray_equals_local(ray_local, tmp_path, small_pool):
    from pie_retriever.cli import main

    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(d) for d in small_pool) + "\n", encoding="utf-8")
    base = ["index", str(pool), "--model", "minilm"]
    assert main([*base, "-o", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    assert main([*base, "-o", str(tmp_path / "local")]) == 0
    remote, local = PIERetriever.load(tmp_path / "ray"), PIERetriever.load(tmp_path / "local")
    assert remote.encoder.precision == local.encoder.precision == "fp32"  # the default, on every CPU
    assert_same_vectors(remote, local, PRECISION_TOLERANCE["fp32"] + FP16_ROUNDING)  # fp16 storage, the default
