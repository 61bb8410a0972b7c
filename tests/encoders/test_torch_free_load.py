"""Indexes built with the default torch model answer queries without torch (issue 30 item 1), and an ONNX export
edited in place is refused at load (issue 25 item 6).

One module-scoped cache (``$PIE_RETRIEVER_CACHE`` in a tmp folder) holds the fp32 export, built once (about 20 s,
torch) by the first load; every other test reuses it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("onnx")

from pie_retriever import PIERetriever
from pie_retriever.encoders import runtime as rt
from pie_retriever.encoders.models import DEFAULT_MODEL, ONNX_MODEL, file_fingerprint
from pie_retriever.errors import ConfigError, ModelIntegrityError
from pie_retriever.pool.pools import load_bundled_pool, load_bundled_queries

QUERY = "Write a haiku about autumn leaves."


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tmp cache with the fp32 export of the default model, and a default-model index of the bundled pool."""
    root = tmp_path_factory.mktemp("torch_free")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIE_RETRIEVER_CACHE", str(root / "cache"))
        mp.delenv(rt.RUNTIME_ENV, raising=False)
        index = root / "default.pie"
        PIERetriever.from_demonstrations(load_bundled_pool()).save(index)  # the default model, torch
        loaded = PIERetriever.load(index, encoder_runtime="onnx")  # builds the export once
        assert isinstance(loaded.encoder, rt.TorchOnnxEncoder)
        yield {"root": root, "cache": root / "cache", "index": index, "export": loaded.encoder.folder}


def _child_env(cache: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PIE_RETRIEVER_CACHE": str(cache), **extra}
    env.pop(rt.RUNTIME_ENV, None)
    env.update(extra)
    return env


def test_fresh_process_loads_the_default_index_and_searches_without_torch(env):
    code = ("import json, sys\nfrom pie_retriever import PIERetriever\n"
            f"r = PIERetriever.load({str(env['index'])!r})\nhits = r.retrieve({QUERY!r}, k=4)\n"
            "print(json.dumps({'encoder': type(r.encoder).__name__, 'torch': 'torch' in sys.modules, "
            "'transformers': 'transformers' in sys.modules, 'ids': [h.id for h in hits]}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_child_env(env["cache"]), check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["encoder"] == "TorchOnnxEncoder"
    assert got["torch"] is False and got["transformers"] is False
    assert len(got["ids"]) == 4 and got["ids"][0].startswith("d-write-poem")


def test_cli_search_imports_no_torch(env):
    """`python -X importtime -m pie_retriever.cli search INDEX QUERY`: no torch module in the import log."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "pie_retriever.cli", "search", str(env["index"]), QUERY, "--json"],
                         capture_output=True, text=True, timeout=120, env=_child_env(env["cache"]), check=True)
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert any(m.startswith("onnxruntime") for m in imported)  # the query really ran through onnxruntime
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]
    hits = json.loads(out.stdout)
    assert len(hits) == 4


def test_cli_env_switch_forces_torch(env, monkeypatch, capsys):
    """`PIE_ENCODER_RUNTIME=torch pie-retriever search ...` encodes with torch (in-process, spying on the choice)."""
    from pie_retriever.cli import main

    chosen = []
    real = rt.query_encoder
    monkeypatch.setattr(rt, "query_encoder", lambda *a, **kw: chosen.append(real(*a, **kw)) or chosen[-1])
    for value, expected in (("torch", type(None)), ("onnx", rt.TorchOnnxEncoder), ("auto", rt.TorchOnnxEncoder)):
        monkeypatch.setenv(rt.RUNTIME_ENV, value)
        assert main(["search", str(env["index"]), QUERY, "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)) == 4
        assert isinstance(chosen[-1], expected), value


def test_top4_identical_to_torch_on_the_bundled_queries(env):
    onnx = PIERetriever.load(env["index"], encoder_runtime="onnx")
    torch_r = PIERetriever.load(env["index"], encoder_runtime="torch")
    assert type(torch_r.encoder).__name__ == "TransformerEncoder"
    queries = [q.instruction for q in load_bundled_queries()]
    same, gaps, diffs = 0, [], []
    for q in queries:
        a, b = onnx.retrieve(q, k=4), torch_r.retrieve(q, k=4)
        diffs.extend(abs(x.score - y.score) for x, y in zip(a, b))
        if [h.id for h in a] == [h.id for h in b]:
            same += 1
        else:  # reported, with the gap between the torch scores at the disagreement
            gaps.append((q, [h.id for h in a], [h.id for h in b], [round(h.score, 6) for h in b]))
    print(f"top-4 identical {same}/{len(queries)}, max score diff {max(diffs):.2e}, disagreements {gaps}")
    assert same / len(queries) >= 0.99, gaps
    assert max(diffs) < 1e-4  # measured 3.6e-7 (cosine of the query vectors >= 0.9999998)


def test_runtime_switch_and_the_saved_config(env, monkeypatch):
    from pie_retriever.encoders.transformer import TransformerEncoder

    manifest = json.loads((env["index"] / "manifest.json").read_text())
    r = PIERetriever.load(env["index"])  # auto is the default
    assert isinstance(r.encoder, rt.TorchOnnxEncoder)
    assert r.encoder.fingerprint == manifest["encoder"]["fingerprint"]
    assert r.encoder.config() == {k: v for k, v in manifest["encoder"].items() if k != "fingerprint"}  # still type transformer
    monkeypatch.setenv(rt.RUNTIME_ENV, "torch")
    assert isinstance(PIERetriever.load(env["index"]).encoder, TransformerEncoder)
    assert isinstance(PIERetriever.load(env["index"], encoder_runtime="onnx").encoder, rt.TorchOnnxEncoder)  # argument wins
    monkeypatch.setenv(rt.RUNTIME_ENV, "tensorflow")
    with pytest.raises(ConfigError, match="encoder_runtime"):
        PIERetriever.load(env["index"])
    with pytest.raises(ConfigError, match="encoder_runtime"):
        PIERetriever.load(env["index"], encoder_runtime="gpu")


def test_resave_keeps_the_torch_encoder_and_round_trips(env, tmp_path):
    r = PIERetriever.load(env["index"])
    r.add([{"id": "new-1", "instruction": "Compose a sonnet about the sea."}])
    r.save(tmp_path / "resaved.pie")
    manifest = json.loads((tmp_path / "resaved.pie" / "manifest.json").read_text())
    assert manifest["encoder"]["type"] == "transformer" and manifest["encoder"]["model"] == DEFAULT_MODEL
    again = PIERetriever.load(tmp_path / "resaved.pie")
    assert again.retrieve("Write a sonnet about the ocean.", k=1)[0].id == "new-1"


def test_expected_fingerprint_equals_the_torch_encoders():
    from pie_retriever.encoders.transformer import TransformerEncoder

    for spec, kwargs in ((DEFAULT_MODEL, {}), ("minilm", {"prompt": "Task: {instruction}", "pooling": "cls", "max_length": 9999})):
        enc = TransformerEncoder(spec, **kwargs)
        assert rt.expected_fingerprint(enc.config())[0] == enc.fingerprint


def test_bulk_calls_go_to_torch_with_the_same_vectors(env):
    enc = PIERetriever.load(env["index"]).encoder
    texts = ["Summarize this article.", "Translate into French: hello.", "Write a limerick about a cat."]
    small = enc.encode(texts)
    assert enc._torch is None
    enc.bulk_texts = 3
    bulk = enc.encode(texts)
    assert type(enc._torch).__name__ == "TransformerEncoder"
    assert float(np.sum(small * bulk, axis=1).min()) >= 0.9999


def test_auto_falls_back_to_torch_with_one_log_line_when_onnxruntime_is_missing(env, monkeypatch, caplog):
    from pie_retriever.encoders.transformer import TransformerEncoder

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: find_spec is None, import fails
    monkeypatch.setattr(rt, "_logged", set())
    with caplog.at_level(logging.WARNING, logger="pie_retriever.encoders.runtime"):
        r = PIERetriever.load(env["index"])
        PIERetriever.load(env["index"])
    assert isinstance(r.encoder, TransformerEncoder)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "pie_retriever.encoders.runtime"]
    assert len(lines) == 1 and "onnxruntime" in lines[0] and "torch" in lines[0]
    with pytest.raises(ConfigError, match="onnxruntime"):
        PIERetriever.load(env["index"], encoder_runtime="onnx")


def test_auto_falls_back_when_the_export_cannot_be_built(env, tmp_path, monkeypatch, caplog):
    """An empty cache and no `onnx` package to export with: torch, one log line, no export folder written."""
    from pie_retriever.encoders.transformer import TransformerEncoder

    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setattr(rt, "_logged", set())
    with caplog.at_level(logging.WARNING, logger="pie_retriever.encoders.runtime"):
        r = PIERetriever.load(env["index"])
    assert isinstance(r.encoder, TransformerEncoder)
    assert any("building it needs onnx" in rec.getMessage() for rec in caplog.records)
    assert not (tmp_path / "empty-cache" / "onnx").exists() or not any((tmp_path / "empty-cache" / "onnx").iterdir())


def _zero_middle(path: Path, size: int = 64 * 1024) -> None:
    length = path.stat().st_size
    with path.open("r+b") as fh:
        fh.seek(length // 2)
        fh.write(b"\0" * size)
    assert path.stat().st_size == length


def test_an_export_edited_in_place_is_refused_at_load(env, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    shutil.copytree(env["cache"], cache)
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(cache))
    model = rt.fp32_export_folder(json.loads((env["index"] / "manifest.json").read_text())["encoder"]["fingerprint"]) / ONNX_MODEL
    assert model.is_file()
    before = file_fingerprint(model)
    _zero_middle(model)
    assert file_fingerprint(model) == before  # the cheap fingerprint cannot see it: only the recorded sha256 can
    for runtime in ("auto", "onnx"):
        with pytest.raises(ModelIntegrityError, match="modified after export"):
            PIERetriever.load(env["index"], encoder_runtime=runtime)
    from pie_retriever.encoders.onnx import OnnxEncoder

    with pytest.raises(ModelIntegrityError, match=ONNX_MODEL):
        OnnxEncoder(model.parent)


def test_export_card_records_the_files_sha256(env):
    from pie_retriever.encoders.models import onnx_files_sha256

    card = json.loads((env["export"] / "pie_onnx.json").read_text())
    assert card["quantize"] == "none" and card["matches_source"] is True
    assert card["files_sha256"] == onnx_files_sha256(env["export"])


@pytest.mark.parametrize("adapter", ["dspy", "llamaindex"])
def test_adapters_that_load_an_index_use_the_onnx_path(env, adapter):
    if adapter == "dspy":
        pytest.importorskip("dspy")
        from pie_retriever.integrations.dspy import PIEKNN

        retriever = PIEKNN.from_index(env["index"], k=2).retriever
    else:
        pytest.importorskip("llama_index.core")
        from pie_retriever.integrations.llamaindex import PIELlamaIndexRetriever

        retriever = PIELlamaIndexRetriever(str(env["index"]), k=2).retriever
    assert isinstance(retriever.encoder, rt.TorchOnnxEncoder)


def test_auto_leaves_bf16_and_temporary_models_to_torch(env, tmp_path, monkeypatch, caplog):
    from pie_retriever.encoders.models import resolve_model
    from pie_retriever.encoders.transformer import TransformerEncoder

    monkeypatch.setattr(rt, "_logged", set())
    monkeypatch.setenv("PIE_PRECISION", "bf16")  # forces bf16 on every encoder built: torch runs it
    assert isinstance(PIERetriever.load(env["index"]).encoder, TransformerEncoder)
    monkeypatch.delenv("PIE_PRECISION")
    model = tmp_path / "minilm-copy"
    shutil.copytree(resolve_model("minilm").path, model)
    folder = PIERetriever.from_demonstrations(load_bundled_pool()[:5], TransformerEncoder(str(model))).save(tmp_path / "tmp-model.pie")
    with caplog.at_level(logging.INFO, logger="pie_retriever.encoders.runtime"):
        assert isinstance(PIERetriever.load(folder).encoder, TransformerEncoder)
    assert any("temporary folder" in rec.getMessage() and rec.levelno == logging.INFO for rec in caplog.records)
    assert not list((env["cache"] / "onnx").glob("*minilm-copy*"))


def test_cli_batch_search_imports_no_torch(env, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(q.instruction for q in load_bundled_queries()[:20]) + "\n", encoding="utf-8")
    out_file = tmp_path / "hits.jsonl"
    code = ("import sys\nfrom pie_retriever.cli import main\n"
            f"rc = main(['search', {str(env['index'])!r}, '--queries', {str(queries)!r}, '-o', {str(out_file)!r}])\n"
            "print('RC', rc, 'TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_child_env(env["cache"]))
    assert "RC 0 TORCH False" in out.stdout, out.stderr[-2000:]
    rows = [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 20 and all(len(r["hits"]) == 4 for r in rows)


def test_service_slot_loads_through_the_onnx_path(env, tmp_path):
    """The selection service loads its indexes with PIERetriever.load (auto): the ONNX path too."""
    from pie_retriever.service.indexes import load_slot

    folder = tmp_path / "svc.pie"
    shutil.copytree(env["index"], folder)
    slot = load_slot("svc", folder, read_only=True)
    assert isinstance(slot.retriever.encoder, rt.TorchOnnxEncoder)


def test_auto_falls_back_when_the_cache_cannot_be_written(env, tmp_path, monkeypatch, caplog):
    from pie_retriever.encoders.transformer import TransformerEncoder

    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(blocked))
    monkeypatch.setattr(rt, "_logged", set())
    with caplog.at_level(logging.WARNING, logger="pie_retriever.encoders.runtime"):
        assert isinstance(PIERetriever.load(env["index"]).encoder, TransformerEncoder)
    assert any("cannot write the export" in rec.getMessage() for rec in caplog.records)


def test_the_onnx_stand_in_pickles_with_its_fingerprint_and_config(env):
    """Ray actors and copies get the encoder by pickle: same fingerprint, same config, same vectors."""
    import pickle

    enc = PIERetriever.load(env["index"]).encoder
    copy = pickle.loads(pickle.dumps(enc))
    texts = ["Write a poem about rain.", "Summarize the report."]
    assert copy.fingerprint == enc.fingerprint and copy.config() == enc.config()
    assert float(np.abs(copy.encode(texts) - enc.encode(texts)).max()) < 1e-5
