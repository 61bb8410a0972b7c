"""The ONNX query path: export (torch.onnx + dynamic int8), OnnxEncoder (tokenizers + onnxruntime), no torch on load.

Fast tests export a tiny random BERT (2 layers, 32 wide, MiniLM's tokenizer) in a few seconds; the ``slow`` tests
export the real default model (``pie-minilm``) to int8 and check it against the torch encoder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pie_retriever import PIERetriever
from pie_retriever.encoders import make_encoder
from pie_retriever.encoders.models import ONNX_CARD, resolve_model
from pie_retriever.encoders.onnx import OnnxEncoder
from pie_retriever.encoders.onnx_export import MATCH_TOLERANCE, export_onnx
from pie_retriever.errors import ConfigError, EncoderMismatchError, OnnxNotBuiltError, UnknownModelError
from pie_retriever.pool.pools import load_bundled_pool

TEXTS = ["Write a poem about the sea.", "Summarize this article about taxes.", "Translate into French: good morning",
         "List three fruits", "a much longer instruction " * 40]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random BERT with MiniLM's tokenizer, saved as a plain Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(resolve_model("minilm").path)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_exports(tiny_model, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tiny-onnx")
    return {q: export_onnx(str(tiny_model), out / q, quantize=q, max_length=64) for q in ("none", "int8")}


def _torch(spec, **kw):
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder(str(spec), precision="fp32", **kw)


def test_export_folder_and_card(tiny_exports, tiny_model):
    for quantize, folder in tiny_exports.items():
        assert {p.name for p in folder.iterdir()} == {"model.onnx", "tokenizer.json", ONNX_CARD}
        card = json.loads((folder / ONNX_CARD).read_text())
        assert card["quantize"] == quantize and card["pooling"] == "mean" and card["dim"] == 32 and card["max_length"] == 64
        assert card["source_fingerprint"] == _torch(tiny_model, max_length=64).fingerprint
    assert json.loads((tiny_exports["none"] / ONNX_CARD).read_text())["matches_source"] is True


def test_fp32_export_matches_torch_and_shares_its_fingerprint(tiny_exports, tiny_model):
    ref = _torch(tiny_model, max_length=64)
    enc = OnnxEncoder(tiny_exports["none"])
    with pytest.warns(UserWarning, match="longer than max_length=64"):
        got, want = enc.encode(TEXTS), ref.encode(TEXTS)
    assert got.shape == (5, 32) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.sum(got * want, axis=1).min() >= MATCH_TOLERANCE
    assert enc.fingerprint == ref.fingerprint  # interchangeable vectors: the same fingerprint
    assert enc.encode([]).shape == (0, 32)
    with pytest.raises(TypeError, match="single string"):
        enc.encode("one text")


def _unmatched_copy(folder: Path, dest: Path) -> Path:
    """A copy of an export whose card says its vectors did not match torch (as a real int8 export's do not)."""
    import shutil

    shutil.copytree(folder, dest)
    card = json.loads((dest / ONNX_CARD).read_text())
    card["matches_source"] = False
    (dest / ONNX_CARD).write_text(json.dumps(card))
    return dest


def test_int8_export_is_close_and_fingerprint_follows_the_measured_agreement(tiny_exports, tiny_model, tmp_path):
    ref = _torch(tiny_model, max_length=64)
    enc = OnnxEncoder(tiny_exports["int8"])
    cos = np.sum(enc.encode(TEXTS[:4]) * ref.encode(TEXTS[:4]), axis=1)
    assert cos.min() > 0.9
    card = enc.card
    # the tiny random net quantises almost losslessly; the real MiniLM does not (test_real_int8_export_agrees_with_torch)
    assert card["matches_source"] == (card["agreement"]["cosine_min"] >= MATCH_TOLERANCE)
    assert (enc.fingerprint == ref.fingerprint) == card["matches_source"]
    own = OnnxEncoder(_unmatched_copy(tiny_exports["int8"], tmp_path / "own"))
    assert own.fingerprint != ref.fingerprint
    assert OnnxEncoder(tmp_path / "own", prompt="pie").fingerprint != own.fingerprint  # the prompt is part of it


def test_threads_policy_one_session_per_thread_count(tiny_exports):
    enc = OnnxEncoder(tiny_exports["int8"])
    enc.encode(["one query"])
    assert set(enc._sessions) == {1}  # a single text: one intra-op thread
    enc.encode(TEXTS[:3])
    assert len(enc._sessions) >= 1 and enc.session(1).get_session_options().intra_op_num_threads == 1
    pinned = OnnxEncoder(tiny_exports["int8"], threads=2)
    pinned.encode(["q"])
    assert set(pinned._sessions) == {2}


def test_batches_and_single_texts_agree(tiny_exports):
    enc = OnnxEncoder(tiny_exports["none"], batch_size=2)
    together = enc.encode(TEXTS[:4])
    alone = np.vstack([enc.encode([t]) for t in TEXTS[:4]])
    assert np.sum(together * alone, axis=1).min() > 0.99999


def test_model_spec_resolution_and_errors(tiny_exports, tiny_model, tmp_path):
    folder = tiny_exports["int8"]
    assert isinstance(make_encoder(folder), OnnxEncoder)
    assert type(make_encoder(str(tiny_model))).__name__ == "TransformerEncoder"
    assert resolve_model(str(folder)).extra["onnx"]["quantize"] == "int8"
    with pytest.raises(ConfigError, match="pooling and precision built in"):
        make_encoder(folder, pooling="cls")
    with pytest.raises(UnknownModelError, match="is an ONNX export; run it with OnnxEncoder"):
        _torch(folder)
    with pytest.raises(UnknownModelError, match="is not an ONNX export"):
        OnnxEncoder(str(tiny_model))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ONNX_CARD).write_text('{"format": "pie-onnx"}')
    with pytest.raises(UnknownModelError, match="missing keys"):
        resolve_model(str(broken))
    with pytest.raises(ConfigError, match="non-empty folder"):
        export_onnx(str(tiny_model), folder)
    with pytest.raises(ConfigError, match="Unknown quantize 'int4'"):
        export_onnx(str(tiny_model), tmp_path / "x", quantize="int4")


def test_retriever_with_folder_saves_and_loads_without_torch(tiny_exports, small_pool, tmp_path):
    r = PIERetriever.from_demonstrations(small_pool, str(tiny_exports["int8"]))
    assert isinstance(r.encoder, OnnxEncoder)
    hits = r.retrieve("Write a poem about the sea.", k=2)
    r.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"]["type"] == "onnx" and manifest["encoder"]["model"] == str(tiny_exports["int8"])
    code = textwrap.dedent(f"""
        import sys
        from pie_retriever import PIERetriever
        r = PIERetriever.load({str(tmp_path / 'idx')!r})
        hits = r.retrieve("Write a poem about the sea.", k=2)
        print([h.id for h in hits])
        assert "torch" not in sys.modules, "torch was imported"
        assert "transformers" not in sys.modules, "transformers was imported"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str([h.id for h in hits])


def test_torch_index_refuses_int8_encoder_but_accepts_fp32_export(tiny_exports, tiny_model, small_pool, tmp_path):
    r = PIERetriever.from_demonstrations(small_pool, _torch(tiny_model, max_length=64))
    r.save(tmp_path / "torch-idx")
    with pytest.raises(EncoderMismatchError, match="Encoder mismatch"):
        PIERetriever.load(tmp_path / "torch-idx", encoder=OnnxEncoder(_unmatched_copy(tiny_exports["int8"], tmp_path / "own")))
    loaded = PIERetriever.load(tmp_path / "torch-idx", encoder=OnnxEncoder(tiny_exports["none"]))
    assert [h.id for h in loaded.retrieve("Write a poem", k=3)] == [h.id for h in r.retrieve("Write a poem", k=3)]


def test_cli_export_onnx(tiny_model, tmp_path):
    from pie_retriever.cli import main

    assert main(["export", str(tiny_model), "-o", str(tmp_path / "cli"), "--format", "onnx", "--max-length", "32",
                 "--set", "quantize=none"]) == 0
    card = json.loads((tmp_path / "cli" / ONNX_CARD).read_text())
    assert card["quantize"] == "none" and card["max_length"] == 32


# -- the real default model ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pie_minilm_int8(tmp_path_factory) -> Path:
    return export_onnx("pie-minilm", tmp_path_factory.mktemp("pie-minilm-onnx") / "int8", quantize="int8")


@pytest.mark.slow
def test_real_int8_export_agrees_with_torch(pie_minilm_int8):
    from pie_retriever.encoders.transformer import TransformerEncoder

    texts = [d.instruction for d in load_bundled_pool()]
    ref = TransformerEncoder("pie-minilm", precision="fp32").encode(texts)
    got = OnnxEncoder(pie_minilm_int8).encode(texts)
    cos = np.sum(ref * got, axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97, (cos.mean(), cos.min())
    enc = OnnxEncoder(pie_minilm_int8)
    assert enc.card["matches_source"] is False and enc.fingerprint != TransformerEncoder("pie-minilm").fingerprint
    # the same 4 nearest neighbours, mostly (bundled pool, leave-one-out)
    def top4(v):
        s = v @ v.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :4]
    overlap = np.mean([len(set(a) & set(b)) / 4 for a, b in zip(top4(ref), top4(got))])
    assert overlap >= 0.85, overlap


@pytest.mark.slow
def test_real_int8_cold_load_has_no_torch(pie_minilm_int8, tmp_path):
    r = PIERetriever.from_demonstrations(load_bundled_pool(), str(pie_minilm_int8))
    r.save(tmp_path / "idx")
    code = textwrap.dedent(f"""
        import sys, time
        t = time.perf_counter()
        from pie_retriever import PIERetriever
        hits = PIERetriever.load({str(tmp_path / 'idx')!r}).retrieve("Write a haiku about autumn.", k=4)
        print(time.perf_counter() - t, len(hits), "torch" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seconds, n, torch_loaded = done.stdout.split()
    assert n == "4" and torch_loaded == "False"


@pytest.mark.slow
def test_default_onnx_alias_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path / "cache"))
    enc = make_encoder("pie-minilm-onnx")
    assert isinstance(enc, OnnxEncoder) and enc.card["quantize"] == "int8"
    assert str(enc.folder).startswith(str(tmp_path / "cache" / "onnx"))
    assert enc.config()["model"] == "pie-minilm-onnx"
    assert make_encoder("pie-minilm-onnx").folder == enc.folder  # second use: no rebuild
    # an index built with the alias reloads on a machine whose cache is empty: loading builds the export again
    PIERetriever.from_demonstrations([{"instruction": "Write a poem."}, {"instruction": "Sum two numbers."}], enc).save(tmp_path / "idx")
    monkeypatch.setenv("PIE_RETRIEVER_CACHE", str(tmp_path / "empty"))
    with pytest.raises(OnnxNotBuiltError, match=r"not built yet.*make_encoder\('pie-minilm-onnx'\)"):
        OnnxEncoder("pie-minilm-onnx")  # resolving never builds (no import circle): the factory does
    loaded = PIERetriever.load(tmp_path / "idx")
    assert str(loaded.encoder.folder).startswith(str(tmp_path / "empty")) and loaded.retrieve("Write a haiku.", k=1)


def test_rebuilding_an_export_gives_the_same_fingerprint(tiny_exports, tiny_model, tmp_path):
    """A saved index names its int8 export by fingerprint: rebuilding the export (same versions) must reproduce it."""
    again = export_onnx(str(tiny_model), tmp_path / "again", quantize="int8", max_length=64)
    assert (again / "model.onnx").read_bytes() == (tiny_exports["int8"] / "model.onnx").read_bytes()
    assert OnnxEncoder(_unmatched_copy(again, tmp_path / "a")).fingerprint == \
        OnnxEncoder(_unmatched_copy(tiny_exports["int8"], tmp_path / "b")).fingerprint
