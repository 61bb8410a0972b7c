"""MilvusIndex against a real Milvus Lite database (a local file per test): the same top-k as faiss flat,
add/delete, filters (pushed down or sent as ids), persistence and its checks, the concurrency stress."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.base import l2_normalize
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import ConfigError, EncoderMismatchError, ExternalIndexError, IndexLoadError
from pie_retriever.evaluation.bench.stress import make_pool, run_stress
from pie_retriever.index import index_class
from pie_retriever.index.milvus_index import MilvusIndex, close_local_server, where_expression
from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries
from pie_retriever.retrieval.filters import compile_filter

pytestmark = pytest.mark.milvus


@pytest.fixture
def lite(tmp_path):
    """Options of a Milvus Lite collection in this test's own database file; its server is stopped after."""
    uri = str(tmp_path / "milvus" / "pie.db")
    yield {"uri": uri, "collection": "pool"}
    close_local_server(uri)


def _exact_flat_options() -> dict:
    """faiss flat with fp32 storage where the index has a storage option (an fp16 default would round scores)."""
    try:
        return index_class("flat").check_options({"vectors": "fp32"}, "flat")
    except ConfigError:
        return {}


def _client_of(index: MilvusIndex):
    return index._client


def test_startup_cost(tmp_path):
    """Milvus Lite starts in this process (a gRPC server thread per database file): time the first collection."""
    uri = str(tmp_path / "first.db")
    start = time.perf_counter()
    index = MilvusIndex(8, uri=uri, collection="c")
    index.add(np.arange(3), l2_normalize(np.eye(3, 8, dtype=np.float32)))
    index.search(l2_normalize(np.eye(1, 8, dtype=np.float32)), 2)
    elapsed = time.perf_counter() - start
    close_local_server(uri)
    print(f"Milvus Lite: new database + collection + insert + search in {elapsed:.2f}s")
    assert elapsed < 60


@pytest.fixture(scope="module")
def default_encoder():
    from pie_retriever.encoders.models import DEFAULT_MODEL
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(DEFAULT_MODEL)


def test_same_topk_as_faiss_flat_on_bundled_pool(lite, default_encoder):
    """The default model's vectors of the bundled pool (encoded once) in faiss flat and in Milvus Lite FLAT."""
    from pie_retriever.index import create_index

    vectors = default_encoder.encode_documents([d.instruction for d in load_bundled_pool()])
    queries = default_encoder.encode_queries([q.instruction for q in load_bundled_queries()])
    labels = np.arange(len(vectors), dtype=np.int64)
    faiss, milvus = create_index(vectors.shape[1], "flat", **_exact_flat_options()), MilvusIndex(vectors.shape[1], **lite)
    faiss.add(labels, vectors)
    milvus.add(labels, vectors)
    (fs, fi), (ms, mi) = faiss.search(queries, 4), milvus.search(queries, 4)
    np.testing.assert_allclose(fs, ms, atol=1e-5)
    ties = np.abs(np.diff(fs, axis=1)).min(axis=1) < 1e-6  # rows where two hits score the same
    agree = int((fi == mi).all(axis=1).sum())
    print(f"top-4 agreement Milvus Lite vs faiss flat, bundled pool, default model: {agree}/{len(queries)} (ties: {int(ties.sum())})")
    assert ((fi == mi).all(axis=1) | ties).all()


def test_add_delete_reconstruct_ids(lite):
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.normal(size=(50, 16)).astype(np.float32))
    index = MilvusIndex(16, **lite)
    index.add(np.arange(100, 150), x)
    assert len(index) == 50 and sorted(index.ids().tolist()) == list(range(100, 150))
    scores, got = index.search(x[:5], 3)
    assert (got[:, 0] == np.arange(100, 105)).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    index.remove(np.array([100, 101]))
    assert len(index) == 48
    _, got = index.search(x[:5], 1)
    assert 100 not in got and 101 not in got and got[2, 0] == 102
    np.testing.assert_array_equal(index.reconstruct(np.array([110, 120])), x[[10, 20]])  # exact: fp32 stored and read back
    _, got = index.search(x[:1], 4, allowed=np.array([120, 130]))
    assert set(got[0, :2]) == {120, 130} and (got[0, 2:] == -1).all()
    scores, got = index.search(x[:1], 60)
    assert (got[0, 48:] == -1).all() and np.isneginf(scores[0, 48:]).all()
    assert sorted(index._ids_by_iterator().tolist()) == sorted(index.ids().tolist())  # the server path
    with pytest.raises(ExternalIndexError, match=r"has no vector for id\(s\) \[100\]"):
        index.reconstruct(np.array([100]))


def test_retriever_add_delete_keeps_index_and_pool_equal(lite, small_pool, fake_encoder):
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options=lite)
    assert len(r) == len(r.index) == 6
    r.add([{"id": "n1", "instruction": "Write a limerick about a cat.", "metadata": {"task": "write|poem"}}])
    r.delete(["p1", "s2"])
    assert len(r) == len(r.index) == 5
    hits = r.retrieve("Write a poem about the ocean.", k=5)
    assert "p1" not in [h.id for h in hits] and {h.id for h in hits} == {"p2", "s1", "t1", "t2", "n1"}


FILTER_POOL = [
    {"id": f"f{i}", "instruction": f"{verb} a note about {topic} number {i}",
     "metadata": {"task": task, "topic": topic, "n": i % 3}}
    for i, (verb, topic, task) in enumerate(
        (v, t, k) for v, k in [("write", "write|note"), ("translate", 'say "hi" \\ now'), ("sort", "sort|list")]
        for t in ["cats", "taxes", "music"] for _ in range(4))
]


@pytest.mark.parametrize("flt", [
    {"task": "write|note"},
    {"task": ["write|note", 'say "hi" \\ now']},
    {"task": "sort|list", "topic": "cats"},  # topic is not a filter field: sent as ids
    {"n": 1},  # not a string: sent as ids
    {"task": 1},  # matches nothing, like the in-memory filter
    "predicate",
])
def test_filters_match_the_in_memory_filter(lite, flt, monkeypatch):
    enc = HashingEncoder(dim=32)
    milvus = PIERetriever.from_demonstrations(FILTER_POOL, enc, index="milvus", index_options=lite)
    numpy = PIERetriever.from_demonstrations(FILTER_POOL, enc, index="numpy")
    flt = (lambda d: d.id.endswith("1")) if flt == "predicate" else flt
    sent: list[str] = []
    client = _client_of(milvus.index)
    search = client.search
    monkeypatch.setattr(client, "search", lambda *a, **kw: sent.append(kw.get("filter", "")) or search(*a, **kw))
    for query in ["write something about cats", "translate this"]:
        got = milvus.retrieve(query, k=40, filter=flt)
        want = numpy.retrieve(query, k=40, filter=flt)
        assert sorted(h.id for h in got) == sorted(h.id for h in want)
        np.testing.assert_allclose(sorted(h.score for h in got), sorted(h.score for h in want), atol=1e-5)
    pushed = isinstance(flt, dict) and set(flt) == {"task"} and all(isinstance(v, str) for v in np.atleast_1d(flt["task"]))
    assert all(f.startswith("meta_task in") for f in sent) if pushed else all(not f or f.startswith("id in") for f in sent)


def test_where_expression():
    def expr(spec, fields=("task",)):
        return where_expression(compile_filter(spec), fields)

    assert expr({"task": ["b", 'q"u\\ote']}) == 'meta_task in ["b", "q\\"u\\\\ote"]'
    assert expr({"task": "a", "kind": "x"}, ("task", "kind")) == 'meta_kind in ["x"] and meta_task in ["a"]'
    assert expr({"topic": "x"}) is None  # not a stored field
    assert expr({"task": 1}) is None and expr({"task": None}) is None and expr({"task": True}) is None
    assert expr({"task": "line\nbreak"}) is None and expr({"task": "x" * 600}) is None


def test_save_load_round_trip_writes_no_vectors(lite, tmp_path, small_pool, fake_encoder):
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options=lite)
    folder = r.save(tmp_path / "idx")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(p.name for p in folder.iterdir()) == ["demonstrations.jsonl", "manifest.json"]
    assert list(manifest["files"]) == ["demonstrations.jsonl"]
    assert manifest["index"] == {"kind": "milvus", "options": {
        "uri": lite["uri"], "collection": "pool", "index_type": "FLAT", "filter_fields": ["task"], "revision": 1}}
    loaded = PIERetriever.load(folder, encoder=fake_encoder)
    query = "Summarize this article about the ocean."
    assert [(h.id, round(h.score, 5)) for h in loaded.retrieve(query, k=3, filter={"task": "summarize|article"})] == \
        [(h.id, round(h.score, 5)) for h in r.retrieve(query, k=3, filter={"task": "summarize|article"})]
    # the loaded retriever takes the writer lease on its first write; the original may no longer write
    loaded.add([{"id": "x1", "instruction": "List three colours."}])
    with pytest.raises(ExternalIndexError, match="was taken over by another retriever"):
        r.add([{"id": "x2", "instruction": "List three fruits."}])
    assert len(loaded) == len(loaded.index) == 7 and "x2" not in r


def test_load_refuses_a_collection_written_after_the_save(lite, tmp_path, small_pool, fake_encoder):
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options=lite)
    folder = r.save(tmp_path / "idx")
    r.delete("p1")
    with pytest.raises(IndexLoadError, match=r"was written to after this save \(revision 1 when saved, 2 now\)"):
        PIERetriever.load(folder, encoder=fake_encoder)
    r.save(folder)  # saving again points at the current state
    assert len(PIERetriever.load(folder, encoder=fake_encoder)) == 5


def test_load_checks_count_fingerprint_dim_and_existence(lite, tmp_path, small_pool, fake_encoder):
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options=lite)
    folder = r.save(tmp_path / "idx")
    _client_of(r.index).delete("pool", ids=[0])  # behind the retriever's back: the revision stays, the count drops
    with pytest.raises(IndexLoadError, match="inconsistent: manifest count 6, 6 demonstrations, 5 vectors"):
        PIERetriever.load(folder, encoder=fake_encoder)
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options={**lite, "drop_existing": True})
    folder = r.save(tmp_path / "idx")
    client = _client_of(r.index)
    client.alter_collection_properties("pool", properties={"pie.encoder_fingerprint": "0123456789abcdef"})
    with pytest.raises(EncoderMismatchError, match="holds vectors of encoder fingerprint 0123456789abcdef"):
        PIERetriever.load(folder, encoder=fake_encoder)
    client.drop_collection("pool")
    with pytest.raises(IndexLoadError, match="does not exist"):
        PIERetriever.load(folder, encoder=fake_encoder)
    MilvusIndex(32, **lite)  # the same name, another dim
    with pytest.raises(IndexLoadError, match="holds 32-d vectors; the manifest says dim=64"):
        PIERetriever.load(folder, encoder=fake_encoder)


def test_load_of_a_missing_database_creates_nothing(tmp_path, small_pool, fake_encoder):
    uri = str(tmp_path / "gone" / "pie.db")
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options={"uri": uri, "collection": "c"})
    folder = r.save(tmp_path / "idx")
    close_local_server(uri)
    import shutil

    shutil.rmtree(tmp_path / "gone")
    with pytest.raises(IndexLoadError, match="does not exist; the saved index points at it"):
        PIERetriever.load(folder, encoder=fake_encoder)
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize(("options", "pattern"), [
    ({}, r"needs index_options=\{'uri': \.\.\., 'collection': \.\.\.\}"),
    ({"uri": "x.db"}, "collection must be a Milvus collection name"),
    ({"uri": "x.db", "collection": "bad-name"}, "collection must be a Milvus collection name"),
    ({"uri": "pool.sqlite", "collection": "c"}, "neither a local Milvus Lite file ending in .db"),
    ({"uri": "http://root:secret@host:19530", "collection": "c"}, "carries credentials"),
    ({"uri": "x.db", "collection": "c", "index_type": "IVF"}, "index_type 'IVF' is not one of"),
    ({"uri": "x.db", "collection": "c", "filter_fields": "task"}, "filter_fields must be a list"),
    ({"uri": "x.db", "collection": "c", "colour": 1}, r"unknown option\(s\) \['colour'\]"),
])
def test_bad_options(options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        PIERetriever(HashingEncoder(dim=8), index="milvus", index_options=options)


def test_a_new_index_refuses_a_collection_that_holds_vectors(lite, small_pool, fake_encoder):
    PIERetriever.from_demonstrations(small_pool, fake_encoder, index="milvus", index_options=lite)
    with pytest.raises(ConfigError, match="already holds 6 vectors. Load the saved retriever"):
        PIERetriever(fake_encoder, index="milvus", index_options=lite)
    r = PIERetriever(fake_encoder, index="milvus", index_options={**lite, "drop_existing": True})
    assert len(r.index) == 0


def test_stress_readers_writer_saver(lite):
    """The core's stress run on a Milvus index: readers with a writer, then readers with a saver, zero faults.

    A save of a Milvus index points at the live collection, so a saver racing a writer gets saves that are
    refused on load (the third run): the refusal is the only error allowed there, never a wrong hit."""
    r = PIERetriever.from_demonstrations(make_pool(2000), HashingEncoder(dim=64), index="milvus", index_options=lite)
    for kwargs in ({"writer": True, "saver": False}, {"writer": False, "saver": True}):
        report = run_stress(r, seconds=4.0, readers=4, seed=1, **kwargs)
        print(report.as_dict())
        assert report.queries > 20 and (report.writes > 4 or report.saves > 1)
        assert report.errors == [] and report.wrong_scores == report.filter_violations == report.empty_results == 0
        assert len(r) == len(r.index)
    r = PIERetriever.from_demonstrations(make_pool(2000), HashingEncoder(dim=64), index="milvus",
                                         index_options={**lite, "drop_existing": True})
    report = run_stress(r, seconds=4.0, readers=4, writer=True, saver=True, seed=2)
    print(report.as_dict())
    assert report.wrong_scores == report.filter_violations == report.empty_results == 0
    # a racing save is refused on load: by its revision, or by its count when the write lands between the two checks
    assert all(e.startswith("saver: IndexLoadError") and ("written to after this save" in e or "is inconsistent" in e)
               for e in report.errors)
    assert len(r) == len(r.index)


def test_cli_index_and_search(lite, tmp_path, small_pool, capsys):
    from pie_retriever.cli import main

    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps(d) for d in small_pool) + "\n", encoding="utf-8")
    out = tmp_path / "idx"
    assert main(["index", str(pool), "-o", str(out), "--model", "minilm", "--index", "milvus",
                 "--index-option", f"uri={lite['uri']}", "--index-option", "collection=cli"]) == 0
    assert json.loads((out / "manifest.json").read_text())["index"]["options"]["collection"] == "cli"
    capsys.readouterr()
    assert main(["search", str(out), "Write a haiku about rain.", "-k", "2", "--json", "--filter", "task=write|poem"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in hits] and all(h["metadata"]["task"] == "write|poem" for h in hits)


def test_a_lite_file_held_by_another_process_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    uri = str(tmp_path / "held.db")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pymilvus import MilvusClient\n"
                               f"MilvusClient({uri!r}).list_collections(); print('open', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ExternalIndexError, match="lets one process open a database file at a time"):
            MilvusIndex(8, uri=uri, collection="c")
    finally:
        holder.kill()
        holder.wait()
