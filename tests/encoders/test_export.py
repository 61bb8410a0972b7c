"""`pie-retriever export` / export_model: the merged Hugging Face + sentence-transformers folder of pie-minilm.

One real export per module (the packaged weights, ~10 s): the folder's layout and card, identical vectors and
fingerprint through resolve_model, an in-package index loading with the exported folder, sentence-transformers
loading it with cosine >= 0.9999, a changed file losing the shared fingerprint, the format registry and the
option errors. vLLM's pooling runner on the folder is tested against a real server in
tests/integrations/test_server_real.py.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from pie_retriever.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:.*were truncated:UserWarning")  # the 400-word text, on purpose

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "Write a haiku about the autumn rain.",
    "Translate 'good morning' into Italian.",
    "Summarize the following paragraph in one sentence.",
    "Classify the sentiment of this review as positive or negative.",
    "word " * 400,  # truncated to 256 tokens by every loader
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """pie-minilm exported through the command line, with the IEB row of results/ieb_eval.json in its card."""
    from pie_retriever.cli import main

    out = tmp_path_factory.mktemp("export") / "pie-minilm"
    assert main(["export", "pie-minilm", "-o", str(out), "--ieb-results", str(REPO / "results" / "ieb_eval.json")]) == 0
    return out


@pytest.fixture(scope="module")
def in_package():
    from pie_retriever.encoders.transformer import TransformerEncoder

    return TransformerEncoder("pie-minilm")


def test_folder_layout_and_card(exported):
    from pie_retriever.encoders.models import resolve_model, weights_fingerprint

    names = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "modules.json", "1_Pooling/config.json",
            "2_Normalize/config.json", "sentence_bert_config.json", "config_sentence_transformers.json", "pie_export.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    modules = json.loads((exported / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((exported / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and not pooling["pooling_mode_cls_token"]
    assert json.loads((exported / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    st = json.loads((exported / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "", "document": ""} and st["similarity_fn_name"] == "cosine"  # the plain prompt
    card = json.loads((exported / "pie_export.json").read_text())
    assert card["format"] == "pie-export" and card["export_format"] == "hf" and card["source"] == "pie-minilm"
    assert card["base"] == "minilm" and card["artifact"] == "pie-minilm" and card["recipe"]["training"]["method"] == "lora"
    assert (card["prompt"], card["pooling"], card["dim"], card["normalize"]) == ("{instruction}", "mean", 384, True)
    assert card["identical_vectors"] is True
    assert card["fingerprint"]["source"] == weights_fingerprint(resolve_model("pie-minilm"))
    rows = json.loads((REPO / "results" / "ieb_eval.json").read_text())["results"]
    row = next(r for r in rows if r.get("model") == "pie-minilm")  # the card copies the source model's IEB row
    assert card["ieb"]["p@4"] == pytest.approx(row["p@4"], abs=1e-6) and row["p@4"] > 0.97
    assert card["ieb"]["n_instructions"] == 3291
    assert (exported / "model.safetensors").stat().st_mode & 0o044  # readable by others, like any saved model


def test_resolve_model_gives_identical_vectors_and_fingerprint(exported, in_package):
    from pie_retriever.encoders.models import resolve_model
    from pie_retriever.encoders.transformer import TransformerEncoder

    resolved = resolve_model(exported)
    assert resolved.artifact is None and resolved.default_pooling == "mean" and resolved.default_prompt == "{instruction}"
    enc = TransformerEncoder(str(exported))
    assert enc.fingerprint == in_package.fingerprint
    np.testing.assert_array_equal(enc.encode(TEXTS), in_package.encode(TEXTS))  # bit for bit (same merged fp32 weights)
    base = dict(in_package.model.named_parameters())
    assert all(np.array_equal(p.detach().numpy(), base[n].detach().numpy()) for n, p in enc.model.named_parameters())


def test_in_package_index_loads_with_the_exported_folder(exported, in_package, small_pool, tmp_path):
    from pie_retriever import PIERetriever
    from pie_retriever.encoders.transformer import TransformerEncoder

    built = PIERetriever.from_demonstrations(small_pool, in_package)
    built.save(tmp_path / "idx")
    loaded = PIERetriever.load(tmp_path / "idx", encoder=TransformerEncoder(str(exported)))
    query = "Compose a short poem about the sea."
    assert [h.id for h in loaded.retrieve(query, k=3)] == [h.id for h in built.retrieve(query, k=3)]


def test_sentence_transformers_loads_it(exported, in_package):
    from sentence_transformers import SentenceTransformer

    from pie_retriever.encoders.transformer import TransformerEncoder

    model = SentenceTransformer(str(exported), device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    fp32 = TransformerEncoder("pie-minilm", precision="fp32").encode(TEXTS)
    cos_fp32 = (vectors * fp32).sum(1)
    cos_default = (vectors * in_package.encode(TEXTS)).sum(1)
    print(f"sentence-transformers vs in-package fp32: min cosine {cos_fp32.min():.6f}; vs default precision {cos_default.min():.6f}")
    assert cos_fp32.min() >= 0.9999 and cos_default.min() >= 0.9999
    assert model.get_max_seq_length() == 256


def test_changed_files_lose_the_shared_fingerprint(exported, in_package, tmp_path, caplog):
    from pie_retriever.encoders.models import resolve_model

    copy = tmp_path / "edited"
    shutil.copytree(exported, copy)
    assert resolve_model(copy).extra["weights_fingerprint"] == resolve_model(exported).extra["weights_fingerprint"]  # a copy is the same
    (copy / "1_Pooling" / "config.json").write_text((copy / "1_Pooling" / "config.json").read_text() + "\n")
    with caplog.at_level(logging.WARNING, logger="pie_retriever.encoders.export_card"):
        resolved = resolve_model(copy)
    assert "weights_fingerprint" not in resolved.extra
    assert any("files changed since the export" in r.getMessage() for r in caplog.records)


def _dummy_export(model_spec, out_dir, **options):
    Path(out_dir).mkdir(parents=True)
    (Path(out_dir) / "dummy.json").write_text(json.dumps({"model": model_spec, **options}))
    return out_dir


def test_format_registry_drives_api_and_cli(monkeypatch, tmp_path):
    from pie_retriever.cli import build_parser, main
    from pie_retriever.encoders import export as export_module

    assert export_module.EXPORT_FORMATS["hf"] == "pie_retriever.encoders.export:export_hf"
    with pytest.raises(ConfigError, match=r"Unknown export format 'nope'; choose one of: hf"):
        export_module.export_model("pie-minilm", tmp_path / "x", format="nope")
    monkeypatch.setitem(export_module.EXPORT_FORMATS, "dummy", f"{__name__}:_dummy_export")
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["export"]
    assert list(next(a for a in sub._actions if a.dest == "format").choices) == list(export_module.EXPORT_FORMATS)
    assert main(["export", "minilm", "-o", str(tmp_path / "d"), "--format", "dummy", "--set", "quantize=none", "--set", "bits=8"]) == 0
    assert json.loads((tmp_path / "d" / "dummy.json").read_text()) == {"model": "minilm", "quantize": "none", "bits": 8}
    assert main(["export", "minilm", "-o", str(tmp_path / "q"), "--format", "dummy", "--quantize", "int8"]) == 0
    assert json.loads((tmp_path / "q" / "dummy.json").read_text()) == {"model": "minilm", "quantize": "int8"}


def test_option_errors(tmp_path, capsys):
    from pie_retriever import export_model
    from pie_retriever.cli import main

    with pytest.raises(ConfigError, match="needs out_dir"):
        export_model("pie-minilm")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"the folder is not empty\. Pass overwrite=True \(--overwrite\)"):
        export_model("pie-minilm", full)
    with pytest.raises(ConfigError, match=r"Pooling 'last2' cannot be written .*Pass pooling='last'"):
        export_model("minilm", tmp_path / "l2", pooling="last2")
    assert not (tmp_path / "l2").exists() and not list(tmp_path.glob(".l2.*"))  # nothing left behind
    assert main(["export", "pie-minilm", "-o", str(full)]) == 1
    assert "pie-retriever export: error: Cannot export to" in capsys.readouterr().err
    assert (full / "keep.txt").read_text() == "x"
    assert main(["export", "pie-minilm", "-o", str(tmp_path / "hfq"), "--quantize", "int8"]) == 1
    assert "--quantize applies to --format onnx" in capsys.readouterr().err and not (tmp_path / "hfq").exists()


@pytest.mark.slow
def test_projection_head_becomes_a_dense_module(tmp_path):
    """A head artifact is exported as a sentence-transformers Dense module between pooling and Normalize."""
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer

    from pie_retriever import export_model
    from pie_retriever.encoders.transformer import TransformerEncoder

    artifact = tmp_path / "head-artifact"
    artifact.mkdir()
    torch.manual_seed(0)
    save_file({"weight": torch.randn(64, 384) * 0.05, "bias": torch.randn(64) * 0.01}, str(artifact / "head.safetensors"))
    (artifact / "pie_artifact.json").write_text(json.dumps({"format": "pie-artifact", "version": 1, "base": "minilm",
                                                            "type": "head", "files": {"head": "head.safetensors"}}))
    out = export_model(str(artifact), tmp_path / "exported")
    modules = json.loads((out / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense", "3_Normalize"]
    vectors = SentenceTransformer(str(out), device="cpu").encode(TEXTS, normalize_embeddings=True)
    reference = TransformerEncoder(str(artifact), precision="fp32").encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 64)
    assert (vectors * reference).sum(1).min() >= 0.9999
    # TransformerEncoder reads no Dense module: the card says so and the folder does not share the source's fingerprint
    from pie_retriever.encoders.models import resolve_model

    assert json.loads((out / "pie_export.json").read_text())["identical_vectors"] is False
    assert "weights_fingerprint" not in resolve_model(out).extra


def test_export_keeps_its_prompt_in_sentence_transformers(tmp_path, capsys):
    """Issue 29 item 8: a prefix prompt travels as the folder's default prompt; one it cannot express is refused."""
    from sentence_transformers import SentenceTransformer

    from pie_retriever.cli import main
    from pie_retriever.encoders.transformer import TransformerEncoder

    template = "Task of this instruction: {instruction}"
    out = tmp_path / "prefixed"
    assert main(["export", "minilm", "-o", str(out), "--prompt", template]) == 0
    st = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st["prompts"]["query"] == "Task of this instruction: " and st["default_prompt_name"] == "query"
    vectors = SentenceTransformer(str(out), device="cpu").encode(TEXTS, normalize_embeddings=True)  # no prompt_name=
    reference = TransformerEncoder("minilm", prompt=template, precision="fp32").encode(TEXTS)
    assert (vectors * reference).sum(1).min() >= 0.9999
    readme = (out / "README.md").read_text()
    assert "library_name: sentence-transformers" in readme and 'SentenceTransformer("prefixed")' in readme
    assert "applies the prompt itself" in readme

    capsys.readouterr()
    assert main(["export", "minilm", "-o", str(tmp_path / "pie"), "--prompt", "pie"]) == 1
    err = capsys.readouterr().err
    assert "has text after {instruction}" in err and "--client-prompt" in err
    assert not (tmp_path / "pie").exists()
    assert main(["export", "minilm", "-o", str(tmp_path / "pie"), "--prompt", "pie", "--client-prompt"]) == 0
    assert "The client must apply the prompt" in (tmp_path / "pie" / "README.md").read_text()


def test_every_export_kind_has_a_model_card(exported):
    readme = (exported / "README.md").read_text()
    assert readme.startswith("---\nlibrary_name: sentence-transformers") and "pie-minilm" in readme and "p@4" in readme
