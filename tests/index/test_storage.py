"""Vector storage options of the faiss index: fp32, fp16 (default), int8 through faiss' scalar quantizer."""

import json

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.base import l2_normalize
from pie_retriever.errors import ConfigError, IndexLoadError
from pie_retriever.evaluation.bench.storage import exact_neighbours, recall_at_k, recall_at_k_with_ties
from pie_retriever.index import create_index, index_from_files, load_index
from pie_retriever.index.faiss_index import DEFAULT_VECTORS, FaissIndex

BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
RECONSTRUCT_ATOL = {"fp32": 1e-6, "fp16": 1e-3, "int8": 2e-2}


def _data(n=400, d=32, seed=0):
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.normal(size=(n, d)).astype(np.float32))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("vectors", ["fp32", "fp16", "int8"])
def test_storage_round_trip_delete_and_size(kind, vectors, tmp_path):
    x = _data()
    ids = np.arange(1000, 1400, dtype=np.int64)
    index = create_index(32, kind, vectors=vectors)
    assert index.options()["vectors"] == vectors
    index.add(ids, x)
    _, got = index.search(x[:50], 1)
    assert (got[:, 0] == ids[:50]).mean() >= (1.0 if vectors != "int8" else 0.95)
    np.testing.assert_allclose(index.reconstruct(ids[:10]), x[:10], atol=RECONSTRUCT_ATOL[vectors])
    index.remove(ids[:5])  # flat: remove_ids; hnsw: tombstones
    assert len(index) == 395
    _, got = index.search(x[:5], 3)
    assert not set(got.ravel()) & set(ids[:5].tolist())
    names = index.save(tmp_path)
    per_vector = (tmp_path / "index.faiss").stat().st_size / 400
    assert 32 * BYTES[vectors] <= per_vector < 32 * BYTES[vectors] + (8 * 32 + 100 if kind == "hnsw" else 40)
    loaded = load_index(tmp_path, kind, 32, index.options())
    assert set(names) <= {"index.faiss", "deleted.npy"}
    np.testing.assert_array_equal(loaded.search(x[5:20], 4)[1], index.search(x[5:20], 4)[1])
    assert loaded.options() == index.options()


@pytest.mark.parametrize("first", [1, 300])
def test_int8_trains_on_first_add_and_later_adds_fit(first):
    x = _data(600)
    index = create_index(32, "flat", vectors="int8")
    index.add(np.arange(first), x[:first])  # 1: the full [-1, 1] range; 300 (>= INT8_MIN_TRAIN): trained + margin
    index.add(np.arange(first, 600), x[first:])
    truth = exact_neighbours(x, x[:100], 4)
    assert recall_at_k(index.search(x[:100], 4)[1], truth) >= 0.9


def test_hnsw_int8_compaction_retrains():
    x = _data(200)
    index = create_index(32, "hnsw", vectors="int8")
    index.add(np.arange(200), x)
    index.remove(np.arange(60))  # past COMPACT_RATIO: rebuilt from the reconstructed vectors
    assert len(index) == 140 and len(index._deleted) == 0
    _, got = index.search(x[100:110], 1)
    assert (got[:, 0] == np.arange(100, 110)).mean() >= 0.9


def test_fp16_recall_at_4_is_one_and_int8_close():
    x, q = _data(3000, 64, seed=1), _data(300, 64, seed=2)
    truth = exact_neighbours(x, q, 4)
    for vectors, floor in (("fp32", 1.0), ("fp16", 1.0), ("int8", 0.9)):
        index = create_index(64, "flat", vectors=vectors)
        index.add(np.arange(3000), x)
        assert recall_at_k(index.search(q, 4)[1], truth) >= floor, vectors


def test_options_validation():
    assert DEFAULT_VECTORS == "fp16"
    assert create_index(8, "flat").options() == {"vectors": "fp16"}
    assert create_index(8, "hnsw", hnsw_m=8).options()["vectors"] == "fp16"
    with pytest.raises(ConfigError, match="Unknown vectors 'bf16'; choose one of: fp32, fp16, int8"):
        create_index(8, "flat", vectors="bf16")
    with pytest.raises(ConfigError, match="index kind 'flat' takes no options other than 'vectors'"):
        create_index(8, "flat", hnsw_m=8)
    with pytest.raises(ConfigError, match="unknown index option"):
        create_index(8, "hnsw", vector="fp16")
    with pytest.raises(ConfigError, match="takes no options"):
        create_index(8, "numpy", vectors="fp16")
    # a manifest without the option (written before it existed) keeps it absent: the loader reads fp32
    assert FaissIndex.check_options({}, "flat") == {}
    assert "vectors" not in FaissIndex.check_options({"hnsw_m": 8}, "hnsw")


def test_legacy_index_without_option_loads_as_fp32_and_mismatch_is_refused(tmp_path):
    x = _data(20, 8)
    old = create_index(8, "flat", vectors="fp32")
    old.add(np.arange(20), x)
    old.save(tmp_path)
    files = {"index.faiss": (tmp_path / "index.faiss").read_bytes()}
    legacy = index_from_files("flat", files, 8, {})
    assert legacy.options() == {"vectors": "fp32"}
    np.testing.assert_allclose(legacy.reconstruct(np.arange(3)), x[:3], atol=1e-7)
    with pytest.raises(IndexLoadError, match="not the IndexIDMap2 over IndexScalarQuantizer .* fp16 vectors"):
        index_from_files("flat", files, 8, {"vectors": "fp16"})
    half = create_index(8, "hnsw", vectors="fp16")
    half.add(np.arange(20), x)
    half.save(tmp_path)
    with pytest.raises(IndexLoadError, match="int8 vectors"):
        index_from_files("hnsw", {"index.faiss": (tmp_path / "index.faiss").read_bytes()}, 8, {"vectors": "int8"})


@pytest.mark.parametrize("vectors", [None, "int8"])
def test_manifest_records_storage(fake_encoder, small_pool, tmp_path, vectors):
    options = {} if vectors is None else {"vectors": vectors}
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index_options=options)
    r.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["index"]["options"] == {"vectors": vectors or "fp16"}
    loaded = PIERetriever.load(tmp_path / "idx", encoder=fake_encoder)
    assert loaded.index.options() == r.index.options()
    q = "Summarize the text about tax law."
    assert [h.id for h in loaded.retrieve(q, k=3)] == [h.id for h in r.retrieve(q, k=3)]


def test_recall_with_ties_counts_near_equal_scores():
    x = _data(50, 8)
    q = x[:1]
    second = int(np.argsort(-(x @ q[0]))[1])
    twin = x[second] + 1e-6 * x[7]  # id 50: the 2nd neighbour's near-twin
    x = np.concatenate([x, twin[None] / np.linalg.norm(twin)])
    truth = np.array([[0, second]])
    found_twin, found_far = np.array([[0, 50]]), np.array([[0, int(np.argsort(-(x @ q[0]))[10])]])
    assert recall_at_k(found_twin, truth) == 0.5 and recall_at_k_with_ties(found_twin, truth, x, q) == 1.0
    assert recall_at_k(found_far, truth) == 0.5 and recall_at_k_with_ties(found_far, truth, x, q) == 0.5


def test_single_query_search_runs_on_one_openmp_thread_and_restores_the_setting():
    import faiss

    from pie_retriever.index import faiss_index

    x = _data(100, 16)
    index = create_index(16, "flat")
    index.add(np.arange(100), x)
    seen = []
    real = faiss_index.omp_threads

    def spy(faiss_module, n):
        seen.append(n)
        return real(faiss_module, n)

    before = faiss.omp_get_max_threads()
    faiss_index.omp_threads = spy
    try:
        index.search(x[:1], 3)
        index.search(x[:10], 3)
    finally:
        faiss_index.omp_threads = real
    assert seen[0] == 1 and seen[1] >= 1
    assert faiss.omp_get_max_threads() == before
