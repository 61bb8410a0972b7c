"""Hostile index folders: each one is refused with a message naming the problem, and nothing is executed.

Every case starts from a valid saved index, changes one thing (re-hashing the files where the attack
needs matching hashes) and loads it. A marker file proves that no payload ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders.hashing import HashingEncoder
from pie_retriever.errors import EncoderMismatchError, IndexLoadError

POOL = [{"id": f"d{i}", "instruction": f"write a note about topic {i}", "metadata": {"task": f"t{i % 3}"}} for i in range(12)]
MARKER = Path("/tmp/pie-hostile-marker")


class Payload:
    """Unpickling this would create MARKER."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder: Path, m: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(m))


def _rehash(folder: Path) -> None:
    m = _manifest(folder)
    m["files"] = {name: _sha(folder / name) for name in m["files"] if (folder / name).exists()}
    _write_manifest(folder, m)


def _edit(**changes):
    def apply(folder: Path) -> None:
        m = _manifest(folder)
        for key, value in changes.items():
            if value is _DELETE:
                m.pop(key, None)
            else:
                m[key] = value
        _write_manifest(folder, m)
    return apply


def _edit_nested(path: tuple, value):
    def apply(folder: Path) -> None:
        m = _manifest(folder)
        node = m
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        _write_manifest(folder, m)
    return apply


_DELETE = object()


def _add_file_entry(name: str, digest: str = "0" * 64):
    def apply(folder: Path) -> None:
        m = _manifest(folder)
        m["files"][name] = digest
        _write_manifest(folder, m)
    return apply


def _symlink(name: str, target: str):
    def apply(folder: Path) -> None:
        if name != "manifest.json":
            m = _manifest(folder)
            m["files"][name] = _sha(Path(target))
            _write_manifest(folder, m)
        (folder / name).unlink()
        os.symlink(target, folder / name)
    return apply


def _rewrite_demos(transform, rehash: bool = True):
    def apply(folder: Path) -> None:
        rows = [json.loads(line) for line in (folder / "demonstrations.jsonl").read_text().splitlines()]
        text = transform(rows)
        (folder / "demonstrations.jsonl").write_text(text)
        if rehash:
            _rehash(folder)
    return apply


def _jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def _dup_ids(rows):
    rows[1]["id"] = rows[0]["id"]
    return _jsonl(rows)


def _dup_labels(rows):
    rows[1]["_label"] = rows[0]["_label"]
    return _jsonl(rows)


def _no_instruction(rows):
    del rows[0]["instruction"]
    return _jsonl(rows)


def _no_label(rows):
    del rows[0]["_label"]
    return _jsonl(rows)


def _shifted_labels(rows):
    for r in rows:
        r["_label"] += 100
    return _jsonl(rows)


def _numpy_vectors(transform):
    def apply(folder: Path) -> None:
        v = np.load(folder / "vectors.npy")
        ids = np.load(folder / "ids.npy")
        v, ids = transform(v, ids)
        np.save(folder / "vectors.npy", v, allow_pickle=False)
        np.save(folder / "ids.npy", ids, allow_pickle=False)
        _rehash(folder)
    return apply


def _pickled_npy(folder: Path) -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = Payload()
    np.save(folder / "vectors.npy", arr, allow_pickle=True)
    _rehash(folder)


def _raw_pickle(folder: Path) -> None:
    (folder / "index.faiss").write_bytes(pickle.dumps(Payload()))
    _rehash(folder)


def _truncate(name: str):
    def apply(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        _rehash(folder)
    return apply


def _foreign_faiss(folder: Path) -> None:
    import faiss

    faiss.write_index(faiss.IndexFlatL2(16), str(folder / "index.faiss"))
    _rehash(folder)


def _nested_json(folder: Path) -> None:
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)


def _remote_code_model(folder: Path) -> None:
    model = folder.parent / "evil-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "evilbert", "auto_map": {"AutoModel": "evil.EvilModel"},
                                                   "architectures": ["EvilModel"]}))
    (model / "evil.py").write_text(f"import os\nos.system('touch {MARKER}')\n")
    m = _manifest(folder)
    m["encoder"] = {"type": "transformer", "model": str(model), "fingerprint": "0" * 16}
    _write_manifest(folder, m)


# (id, index kind, mutation, expected exception, message regex)
CASES = [
    ("no-manifest", "flat", lambda f: (f / "manifest.json").unlink(), IndexLoadError, "has no manifest.json"),
    ("manifest-not-json", "flat", lambda f: (f / "manifest.json").write_text("{not json"), IndexLoadError, "not valid JSON"),
    ("manifest-is-list", "flat", lambda f: (f / "manifest.json").write_text("[1, 2]"), IndexLoadError, "not a pie_retriever manifest"),
    ("manifest-not-utf8", "flat", lambda f: (f / "manifest.json").write_bytes(b"\xff\xfe{}"), IndexLoadError, "not valid JSON"),
    ("manifest-deeply-nested", "flat", _nested_json, IndexLoadError, "not valid JSON|not a pie_retriever manifest"),
    ("manifest-symlink", "flat", _symlink("manifest.json", "/etc/hostname"), IndexLoadError, "symbolic link"),
    ("foreign-format", "flat", _edit(format="something-else"), IndexLoadError, "not a pie_retriever manifest"),
    ("future-version", "flat", _edit(format_version=2), IndexLoadError, "format version 2"),
    ("files-deleted", "flat", _edit(files=_DELETE), IndexLoadError, "lacks keys \\['files'\\]"),
    ("files-empty", "flat", _edit(files={}), IndexLoadError, "files must map"),
    ("files-not-dict", "flat", _edit(files=["index.faiss"]), IndexLoadError, "files must map"),
    ("path-traversal", "flat", _add_file_entry("../../etc/passwd"), IndexLoadError, "not a plain file name"),
    ("absolute-path", "flat", _add_file_entry("/etc/passwd"), IndexLoadError, "not a plain file name"),
    ("subfolder-path", "flat", _add_file_entry("sub/index.faiss"), IndexLoadError, "not a plain file name"),
    ("hidden-dotdot", "flat", _add_file_entry("..evil"), IndexLoadError, "not a plain file name"),
    ("unexpected-file", "flat", _add_file_entry("evil.py", "a" * 64), IndexLoadError, "unexpected \\['evil.py'\\]"),
    ("bad-digest", "flat", _edit_nested(("files", "index.faiss"), "xyz"), IndexLoadError, "sha256 hex digest"),
    ("demos-symlink", "flat", _symlink("demonstrations.jsonl", "/etc/passwd"), IndexLoadError, "symbolic link"),
    ("index-symlink", "flat", _symlink("index.faiss", "/etc/passwd"), IndexLoadError, "symbolic link"),
    ("missing-file", "flat", lambda f: (f / "demonstrations.jsonl").unlink(), IndexLoadError, "demonstrations.jsonl is missing"),
    ("tampered-demos", "flat", _rewrite_demos(lambda rows: _jsonl(rows[:-1]), rehash=False), IndexLoadError, "modified after saving"),
    ("dim-string", "flat", _edit(dim="16"), IndexLoadError, "dim must be an integer"),
    ("dim-zero", "flat", _edit(dim=0), IndexLoadError, "dim must be an integer"),
    ("dim-huge", "flat", _edit(dim=10**12), IndexLoadError, "dim must be an integer"),
    ("dim-wrong", "flat", _edit(dim=32), (IndexLoadError, EncoderMismatchError), "32"),
    ("count-negative", "flat", _edit(count=-1), IndexLoadError, "count must be an integer"),
    ("count-mismatch", "flat", _edit(count=99), IndexLoadError, "inconsistent"),
    ("next-label-zero", "flat", _edit(next_label=0), IndexLoadError, "_label must be an integer in \\[0, next_label=0\\)"),
    ("next-label-float", "flat", _edit(next_label=7.5), IndexLoadError, "next_label must be an integer"),
    ("next-label-huge", "flat", _edit(next_label=2**70), IndexLoadError, "next_label must be an integer"),
    ("encoder-not-object", "flat", _edit(encoder="hashing"), IndexLoadError, "encoder must be an object"),
    ("encoder-no-fingerprint", "flat", _edit_nested(("encoder", "fingerprint"), _DELETE), IndexLoadError, "encoder must be an object"),
    ("encoder-other-fingerprint", "flat", _edit_nested(("encoder", "fingerprint"), "0123456789abcdef"), EncoderMismatchError, "Encoder mismatch"),
    ("encoder-unknown-type", "flat", _edit_nested(("encoder", "type"), "evil"), ValueError, "Unknown encoder type 'evil'"),
    ("encoder-extra-kwarg", "flat", _edit_nested(("encoder", "evil"), 1), IndexLoadError, "does not fit its encoder type"),
    ("index-kind-unknown", "flat", _edit(index={"kind": "ivf", "options": {}}), IndexLoadError, "index must be"),
    ("index-not-object", "flat", _edit(index="flat"), IndexLoadError, "index must be"),
    ("hnsw-m-negative", "hnsw", _edit_nested(("index", "options", "hnsw_m"), -5), IndexLoadError, "hnsw_m=-5 is invalid"),
    ("hnsw-ef-huge", "hnsw", _edit_nested(("index", "options", "ef_search"), 10**9), IndexLoadError, "ef_search=1000000000 is invalid"),
    ("index-option-unknown", "hnsw", _edit_nested(("index", "options", "evil"), 1), IndexLoadError, "unknown index option"),
    ("flat-with-options", "flat", _edit_nested(("index", "options"), {"hnsw_m": 8}), IndexLoadError, "index kind .flat. takes no options"),
    ("embed-fields-bad", "flat", _edit(embed_fields=["evil"]), IndexLoadError, "embed_fields"),
    ("embed-fields-string", "flat", _edit(embed_fields="instruction"), IndexLoadError, "embed_fields must be a list"),
    ("dedupe-string", "flat", _edit(dedupe="yes"), IndexLoadError, "dedupe must be true or false"),
    ("metric-l2", "flat", _edit(metric="l2"), IndexLoadError, "metric must be 'inner_product'"),
    ("unknown-top-level-key", "flat", _edit(evil={"x": 1}), IndexLoadError, "unknown keys \\['evil'\\]"),
    ("demos-not-json", "flat", _rewrite_demos(lambda rows: "{oops\n"), IndexLoadError, "line 1: not valid JSON"),
    ("demos-not-utf8", "flat", _rewrite_demos(lambda rows: "caf\udce9\n".encode("utf-8", "surrogateescape").decode("latin-1")), IndexLoadError, "line 1|UTF-8"),
    ("demos-row-list", "flat", _rewrite_demos(lambda rows: "[1, 2]\n"), IndexLoadError, "expected a JSON object"),
    ("duplicate-ids", "flat", _rewrite_demos(_dup_ids), IndexLoadError, "id 'd0' appears twice"),
    ("duplicate-labels", "flat", _rewrite_demos(_dup_labels), IndexLoadError, "label 0 appears twice"),
    ("demo-no-instruction", "flat", _rewrite_demos(_no_instruction), IndexLoadError, "line 1: .*instruction"),
    ("demo-no-label", "flat", _rewrite_demos(_no_label), IndexLoadError, "_label must be an integer"),
    ("labels-not-in-index", "numpy", _rewrite_demos(_shifted_labels), IndexLoadError, "_label must be an integer|do not match"),
    ("nan-vectors", "numpy", _numpy_vectors(lambda v, i: (np.full_like(v, np.nan), i)), IndexLoadError, "NaN or infinite"),
    ("fewer-vectors-than-ids", "numpy", _numpy_vectors(lambda v, i: (v[:8], i)), IndexLoadError, "expected int64 \\(8,\\)"),
    ("vectors-wrong-dim", "numpy", _numpy_vectors(lambda v, i: (np.ones((len(v), 4), np.float32), i)), IndexLoadError, "expected float32"),
    ("ids-repeat", "numpy", _numpy_vectors(lambda v, i: (v, np.zeros_like(i))), IndexLoadError, "do not match"),
    ("pickled-npy", "numpy", _pickled_npy, IndexLoadError, "not a plain numpy array"),
    ("pickle-as-faiss", "flat", _raw_pickle, IndexLoadError, "not a readable faiss index"),
    ("truncated-faiss-matching-hash", "flat", _truncate("index.faiss"), IndexLoadError, "not a readable faiss index"),
    ("truncated-hnsw-matching-hash", "hnsw", _truncate("index.faiss"), IndexLoadError, "not a readable faiss index"),
    ("truncated-npy-matching-hash", "numpy", _truncate("vectors.npy"), IndexLoadError, "not a plain numpy array"),
    ("foreign-faiss-type", "flat", _foreign_faiss, IndexLoadError, "not the IndexIDMap2"),
    ("remote-code-model", "flat", _remote_code_model, Exception, "."),
]


def _fresh(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / "idx"
    PIERetriever.from_demonstrations(POOL, HashingEncoder(dim=16), index=kind).save(folder)
    return folder


def test_there_are_at_least_30_kinds():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_folder_is_refused(tmp_path, case):
    name, kind, mutate, error, pattern = case
    MARKER.unlink(missing_ok=True)
    folder = _fresh(tmp_path, kind)
    mutate(folder)
    with pytest.raises(error, match=pattern):
        PIERetriever.load(folder)
    assert not MARKER.exists(), f"{name}: a payload ran"
    assert (folder.parent / "evil-model").exists() or not list(folder.parent.glob(".idx.*")), "leftovers"


def test_load_trusts_nothing_but_still_loads_the_real_thing(tmp_path):
    folder = _fresh(tmp_path, "hnsw")
    r = PIERetriever.load(folder)
    assert len(r) == len(POOL)
    shutil.rmtree(folder)
