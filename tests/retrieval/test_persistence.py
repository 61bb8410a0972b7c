"""save/load: manifest, atomic replace, crash safety, tamper and mismatch detection."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import EncoderMismatchError, IndexLoadError


def _ids(hits):
    return [(h.id, round(h.score, 5)) for h in hits]


@pytest.mark.parametrize("index", ["flat", "hnsw", "numpy"])
def test_save_load_identical_results(tmp_path, small_pool, fake_encoder, index):
    r = PIERetriever.from_demonstrations(small_pool, fake_encoder, index=index)
    r.delete("s2")
    path = r.save(tmp_path / "pool.pie")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "pie-retriever-index" and manifest["format_version"] == 1
    assert manifest["count"] == 5 and manifest["dim"] == 64 and manifest["metric"] == "inner_product"
    assert manifest["encoder"]["fingerprint"] == fake_encoder.fingerprint
    assert set(manifest["files"]) >= {"demonstrations.jsonl"}
    loaded = PIERetriever.load(path)
    for q in ["poem ocean", "translate taxes", "summarize"]:
        assert _ids(loaded.retrieve(q, k=3)) == _ids(r.retrieve(q, k=3))
    assert [d.to_dict() for d in loaded] == [d.to_dict() for d in r]
    new = loaded.add([{"instruction": "fresh one"}])
    assert new[0] not in {d.id for d in r}


def test_real_model_roundtrip(tmp_path, small_pool, minilm):
    r = PIERetriever.from_demonstrations(small_pool, minilm)
    r.save(tmp_path / "idx")
    loaded = PIERetriever.load(tmp_path / "idx")  # rebuilds the encoder from the manifest
    assert loaded.encoder.fingerprint == minilm.fingerprint
    assert _ids(loaded.retrieve("Write a poem about taxes", k=4)) == _ids(r.retrieve("Write a poem about taxes", k=4))


def test_save_replaces_existing_and_no_pickle(tmp_path, small_pool, fake_encoder):
    path = tmp_path / "p"
    PIERetriever.from_demonstrations(small_pool[:2], fake_encoder).save(path)
    PIERetriever.from_demonstrations(small_pool, fake_encoder).save(path)
    assert len(PIERetriever.load(path)) == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or backup left behind
    for f in path.iterdir():
        assert f.suffix in {".json", ".jsonl", ".faiss"}, f


def test_refuses_to_overwrite_foreign_folder(tmp_path, small_pool, fake_encoder):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "important.txt").write_text("keep me")
    with pytest.raises(IndexLoadError, match="is not a pie_retriever index; refusing to overwrite"):
        PIERetriever.from_demonstrations(small_pool, fake_encoder).save(tmp_path / "docs")
    assert (tmp_path / "docs" / "important.txt").read_text() == "keep me"


def test_load_errors(tmp_path, small_pool, fake_encoder):
    with pytest.raises(IndexLoadError, match="does not exist"):
        PIERetriever.load(tmp_path / "missing")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(IndexLoadError, match="has no manifest.json"):
        PIERetriever.load(tmp_path / "foreign")
    (tmp_path / "foreign" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(IndexLoadError, match="not a pie_retriever manifest"):
        PIERetriever.load(tmp_path / "foreign")

    path = PIERetriever.from_demonstrations(small_pool, fake_encoder).save(tmp_path / "ok")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="format version 99; this library reads version 1"):
        PIERetriever.load(path)

    path = PIERetriever.from_demonstrations(small_pool, fake_encoder).save(tmp_path / "tampered")
    with (path / "demonstrations.jsonl").open("a") as fh:
        fh.write('{"id": "evil", "instruction": "injected", "_label": 99}\n')
    with pytest.raises(IndexLoadError, match="was modified after saving"):
        PIERetriever.load(path)


def test_encoder_mismatch(tmp_path, small_pool, fake_encoder):
    path = PIERetriever.from_demonstrations(small_pool, fake_encoder).save(tmp_path / "idx")
    with pytest.raises(EncoderMismatchError, match=r"built with encoder fingerprint \w+ .*but the encoder given has \w+"):
        PIERetriever.load(path, encoder=HashingEncoder(dim=32))
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        PIERetriever.load(path, encoder=HashingEncoder(dim=64, prompt="pie"))
    assert len(PIERetriever.load(path, encoder=HashingEncoder(dim=64))) == 6


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pie_retriever import PIERetriever
    from pie_retriever.encoders.hashing import HashingEncoder
    path, mode = sys.argv[1], sys.argv[2]
    big = [{"instruction": f"new demonstration number {i} about topic {i % 97}"} for i in range(20000)]
    r = PIERetriever.from_demonstrations(big, HashingEncoder(dim=64))
    if mode == "slow-disk":
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("SAVING", flush=True)
            time.sleep(60)
        os.fsync = slow_fsync
    elif mode == "between-renames":
        real_rename, calls = os.rename, []
        def rename(a, b):
            calls.append(a)
            real_rename(a, b)
            if len(calls) == 1:  # the old index has been moved aside, the new one not yet in place
                os.kill(os.getpid(), 9)
        os.rename = rename
    r.save(path)
    print("FINISHED", flush=True)
    """
)


@pytest.mark.parametrize("mode", ["slow-disk", "between-renames"])
def test_kill_during_save_keeps_previous_index(tmp_path, small_pool, fake_encoder, mode):
    path = tmp_path / "pool.pie"
    before = PIERetriever.from_demonstrations(small_pool, fake_encoder)
    before.save(path)
    expected = _ids(before.retrieve("poem about the ocean", k=3))

    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode], stdout=subprocess.PIPE, text=True)
    if mode == "slow-disk":
        assert proc.stdout.readline().strip() == "SAVING"  # the new index is being written
        assert any(p.name.startswith(".pool.pie.tmp-") for p in tmp_path.iterdir())
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    after = PIERetriever.load(path)
    assert len(after) == 6
    assert _ids(after.retrieve("poem about the ocean", k=3)) == expected
    # and a later save still works
    PIERetriever.from_demonstrations(small_pool[:3], fake_encoder).save(path)
    assert len(PIERetriever.load(path)) == 3
    # no temporary or backup folder of the killed saver survives the next save
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".pool.pie.")]
