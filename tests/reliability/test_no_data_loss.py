"""No path to data loss and no raw error (issue 25, items 5 and 7, library side): each case is reproduced here.

An emptied retriever saves and loads; saving over a good index with it keeps a loadable folder; JSON written
is strict; a full disk during save is an IndexSaveError with the previous save intact; hostile size fields in
index files, a file given as the index folder and a lone surrogate in a query are clear PIEErrors.
"""

from __future__ import annotations

import errno
import json
import struct

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import IndexLoadError, IndexSaveError, InvalidDemonstrationError, InvalidQueryError, PIEError

POOL = [{"id": f"d{i}", "instruction": f"write a note about topic {i}", "metadata": {"level": i}} for i in range(8)]


def _retriever(index: str = "flat") -> PIERetriever:
    return PIERetriever.from_demonstrations(POOL, HashingEncoder(dim=16), index=index)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "numpy"])
def test_an_emptied_retriever_saves_and_loads_even_over_a_good_index(tmp_path, kind):
    r = _retriever(kind)
    r.save(tmp_path / "idx")
    r.delete([d["id"] for d in POOL])
    assert len(r) == 0
    r.save(tmp_path / "idx")  # over the good one
    loaded = PIERetriever.load(tmp_path / "idx")
    assert len(loaded) == 0
    loaded.add(POOL[:2])
    assert [h.id for h in loaded.retrieve("write a note about topic 1", k=1)] == ["d1"]


def test_a_new_empty_retriever_saves_and_loads(tmp_path):
    PIERetriever(HashingEncoder(dim=16)).save(tmp_path / "empty")
    assert len(PIERetriever.load(tmp_path / "empty")) == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_metadata_is_refused_at_add_and_never_written(tmp_path, value):
    r = _retriever()
    with pytest.raises(InvalidDemonstrationError, match="NaN and infinity are not JSON"):
        r.add([{"instruction": "x", "metadata": {"score": value}}])
    r.save(tmp_path / "idx")
    for name in ("manifest.json", "demonstrations.jsonl"):
        text = (tmp_path / "idx" / name).read_text()
        for line in text.splitlines() if name.endswith("jsonl") else [text]:
            json.loads(line, parse_constant=lambda c, where=name: pytest.fail(f"{where} holds {c}"))


def test_a_full_disk_during_save_is_a_clear_error_and_the_previous_save_stays(tmp_path, monkeypatch):
    import pie_retriever.retrieval.persistence as persistence

    r = _retriever()
    r.save(tmp_path / "idx")
    r.add([{"instruction": "one more", "id": "extra"}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(persistence.os, "fsync", full)
    with pytest.raises(IndexSaveError, match="No space left on device.*previous save"):
        r.save(tmp_path / "idx")
    monkeypatch.undo()
    assert len(PIERetriever.load(tmp_path / "idx")) == len(POOL)
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary folder left behind
    assert isinstance(IndexSaveError("x"), PIEError) and isinstance(IndexSaveError("x"), OSError)


def _rehash(folder, name: str) -> None:
    import hashlib

    m = json.loads((folder / "manifest.json").read_text())
    m["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))


def test_a_faiss_codes_size_far_beyond_the_file_is_refused(tmp_path):
    r = _retriever()
    r.save(tmp_path / "idx")
    raw = (tmp_path / "idx" / "index.faiss").read_bytes()
    size = struct.pack("<Q", len(POOL) * 16 * 2)  # the fp16 codes vector's length field
    assert raw.count(size) >= 1
    (tmp_path / "idx" / "index.faiss").write_bytes(raw.replace(size, struct.pack("<Q", 2**34), 1))
    _rehash(tmp_path / "idx", "index.faiss")
    with pytest.raises(IndexLoadError, match="index.faiss"):
        PIERetriever.load(tmp_path / "idx")


def test_a_deleted_ids_header_of_2_to_the_40_ids_is_refused(tmp_path):
    r = _retriever("hnsw")
    r.delete(["d0"])
    r.save(tmp_path / "idx")
    raw = (tmp_path / "idx" / "deleted.npy").read_bytes()
    (tmp_path / "idx" / "deleted.npy").write_bytes(raw.replace(b"(1,)", b"(1099511627776,)", 1))
    _rehash(tmp_path / "idx", "deleted.npy")
    with pytest.raises(IndexLoadError, match="declares 8,796,093,022,208 bytes"):
        PIERetriever.load(tmp_path / "idx")


def test_a_numpy_vectors_header_beyond_the_file_is_refused(tmp_path):
    r = _retriever("numpy")
    r.save(tmp_path / "idx")
    raw = (tmp_path / "idx" / "vectors.npy").read_bytes()
    (tmp_path / "idx" / "vectors.npy").write_bytes(raw.replace(b"(8, 16)", b"(8000000000, 16)", 1))
    _rehash(tmp_path / "idx", "vectors.npy")
    with pytest.raises(IndexLoadError, match="declares"):
        PIERetriever.load(tmp_path / "idx")


def test_loading_a_file_says_it_is_a_file(tmp_path):
    f = tmp_path / "pool.jsonl"
    f.write_text("{}\n")
    with pytest.raises(IndexLoadError, match="is a file, not an index folder"):
        PIERetriever.load(f)


def test_a_lone_surrogate_in_a_query_is_a_clear_error():
    r = _retriever()
    with pytest.raises(InvalidQueryError, match="not valid Unicode text"):
        r.retrieve("write a note \udc80 about")
    with pytest.raises(InvalidQueryError, match="not valid Unicode text"):
        r.retrieve_batch(["fine", "bad \ud800"])
    assert np.isfinite([h.score for h in r.retrieve("write a note", k=2)]).all()
