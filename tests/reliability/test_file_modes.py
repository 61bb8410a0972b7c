"""Files the library writes follow the umask (0644 under 022), and overwriting keeps a file's mode (issue 29 item 3)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest

from pie_retriever import PIERetriever
from pie_retriever._util import atomic_write_text, current_umask
from pie_retriever.encoders.hashing import HashingEncoder


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_write_follows_umask(tmp_path, mask, file_mode, dir_mode):
    with umask(mask):
        assert current_umask() == mask
        out = atomic_write_text(tmp_path / "sub" / "picks.jsonl", "{}\n")
    assert mode(out) == file_mode
    assert mode(out.parent) == dir_mode


def test_overwrite_keeps_mode(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text("old")
    path.chmod(0o640)
    with umask(0o022):
        atomic_write_text(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o640


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_index_folder_follows_umask_and_resave_keeps_modes(tmp_path, mask, file_mode, dir_mode):
    r = PIERetriever.from_demonstrations([{"instruction": "Write a poem."}, {"instruction": "Sum 2 and 3."}], HashingEncoder(dim=16))
    with umask(mask):
        idx = r.save(tmp_path / "idx")
        assert mode(idx) == dir_mode
        assert {f.name: mode(f) for f in idx.iterdir()} == {f.name: file_mode for f in idx.iterdir()}
        idx.chmod(0o750)
        (idx / "manifest.json").chmod(0o640)
        r.save(idx)
    assert mode(idx) == 0o750 and mode(idx / "manifest.json") == 0o640


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_training_artifact_follows_umask(tmp_path, mask, file_mode, dir_mode):
    torch = pytest.importorskip("torch")
    from pie_retriever.training.artifact import save_artifact

    with umask(mask):
        out = save_artifact(tmp_path / "art", base="minilm", prompt="pie", pooling="mean", head=torch.nn.Linear(4, 4))
    assert mode(out) == dir_mode
    assert {mode(f) for f in out.rglob("*") if f.is_file()} == {file_mode}


def test_cli_search_output_readable(tmp_path):
    from pie_retriever.cli import main

    r = PIERetriever.from_demonstrations([{"instruction": "Write a poem."}, {"instruction": "Sum 2 and 3."}], HashingEncoder(dim=16))
    r.save(tmp_path / "idx")
    queries = tmp_path / "q.txt"
    queries.write_text("Compose a haiku\n")
    with umask(0o022):
        assert main(["search", str(tmp_path / "idx"), "--queries", str(queries), "-o", str(tmp_path / "picks.jsonl"), "-k", "1"]) == 0
    assert mode(tmp_path / "picks.jsonl") == 0o644
